"""Shared pytest set-up: quiet TensorFlow logs and strict AutoGraph for every test."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Strict AutoGraph turns silent conversion fall-backs into errors (Sonnet's test_utils does the same).
os.environ.setdefault("AUTOGRAPH_STRICT_CONVERSION", "1")
