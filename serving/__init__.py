"""Serving: the SavedModel endpoints for TF Serving and `sqair-export`."""
