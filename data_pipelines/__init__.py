"""Data for SQAIR: MNIST digit sources, the moving multi-MNIST generator, TFRecord storage and tf.data."""
