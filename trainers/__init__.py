"""Training: the loop, optimizers, configs, checkpoints, shipped models and `sqair-train`."""
