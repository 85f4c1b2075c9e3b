"""The command-line jobs built on everything else: the main job (`sqair-demo`) and packaging a shipped model."""
