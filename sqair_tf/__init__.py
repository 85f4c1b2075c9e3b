"""SQAIR in TensorFlow 2 / Keras 3 / TensorFlow Probability: the model."""
