"""Per-sequence metrics of a forward pass, importance-weighted over particles as the original logs them
(BUILD.md O4, O6).

The original averages a per-frame quantity over frames first, then over particles with the normalised importance
weights softmax_k(L_{b,k}) (no gradient), then over sequences. These functions return the per-sequence values [B];
averaging over sequences (and across replicas) is left to the caller.

Inputs use the model's layout: per-step tensors are time-major [T, B·K] with particles contiguous (b·K + k), and
sequence log weights are [B, K] (`interface.sequence_log_weights`).
"""

import tensorflow as tf

from sqair_tf import objectives


def per_particle_frame_mean(per_step, num_particles):
    """Mean over frames of a time-major [T, B·K] tensor, as [B, K]."""
    return tf.reshape(tf.reduce_mean(tf.cast(per_step, tf.float32), axis=0), [-1, num_particles])


def importance_weighted(values, log_weights):
    """Σ_k softmax_k(L) · values[b, k] → [B]; the weights carry no gradient."""
    weights = tf.stop_gradient(objectives.importance_weights(log_weights))
    return tf.reduce_sum(weights * tf.cast(values, weights.dtype), axis=-1)


def count_correct(num_objects, true_count, num_particles):
    """Fraction of frames whose inferred count equals the ground truth, per sequence and particle, [B, K].

    Args:
      num_objects: int [T, B·K], present slots after truncation.
      true_count: int [B] (the sequence's digit count) or [B, T] (a per-frame count, e.g. visible digits).
      num_particles: K.
    """
    inferred = tf.reshape(tf.transpose(tf.cast(num_objects, tf.int32)),
                          [-1, num_particles, tf.shape(num_objects)[0]])  # [B, K, T]
    true_count = tf.cast(true_count, tf.int32)
    target = true_count[:, None, None] if true_count.shape.rank == 1 else true_count[:, None, :]
    return tf.reduce_mean(tf.cast(tf.equal(inferred, target), tf.float32), axis=-1)  # [B, K]


def counting_accuracy(num_objects, true_count, log_weights):
    """The paper's counting accuracy of each sequence (BUILD.md O6), [B].

    Args:
      num_objects: int [T, B·K], present slots after truncation (the inferred count of each frame and particle).
      true_count: int [B] (the sequence's digit count) or [B, T] (a per-frame count, e.g. visible digits).
      log_weights: [B, K] sequence log weights.

    Returns:
      float32 [B]: the fraction of frames whose inferred count equals the ground truth, importance-weighted over
      particles.
    """
    correct = count_correct(num_objects, true_count, tf.shape(log_weights)[-1])  # [B, K]
    return importance_weighted(correct, tf.cast(log_weights, tf.float32))
