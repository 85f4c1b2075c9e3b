"""Loading a trained model from a run directory without its data or optimizer (evaluation, export)."""

import os

import tensorflow as tf

from sqair_tf import models
from trainers import config as config_lib


class CheckpointError(Exception):
    """The run directory has no usable config or checkpoint."""


def load_config(workdir):
    """The run's resolved `TrainConfig` (config.json)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{workdir} is not a training run directory (no config.json)")
    with open(path) as f:
        try:
            return config_lib.TrainConfig.from_json(f.read())
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path} is not a valid training config: {e}") from None


def load_model(workdir, checkpoint=None):
    """Builds the run's model and restores its weights.

    Args:
      workdir: a run directory written by `sqair-train`.
      checkpoint: a checkpoint prefix (e.g. WORKDIR/checkpoints/ckpt-4000) or None for the latest.

    Returns:
      (model, config, step): the run's model (`config.model_name`, an `interface.SequenceModel`), the run's
      `TrainConfig` and the checkpoint's training step.
    """
    config = load_config(workdir)
    if checkpoint is None:
        checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
        if checkpoint is None:
            raise CheckpointError(f"{workdir} has no checkpoint yet (train first)")
    elif not tf.io.gfile.exists(checkpoint + ".index"):
        raise CheckpointError(f"no checkpoint {checkpoint} (expected {checkpoint}.index)")
    model = models.build(config.model_name, config.model)
    h, w, c = config.model.image_shape
    model(tf.zeros([1, 1, h, w, c]), seed=tf.constant([0, 0]))  # Creates the variables.
    step = tf.Variable(0, dtype=tf.int64)
    restore_weights(model, step, checkpoint)
    return model, config, int(step.numpy())


def restore_weights(model, step, prefix):
    """Restores `model`'s weights and the `step` variable from the checkpoint `prefix`, a training checkpoint or a
    shipped model's weights-only one; anything else it holds (optimizer slots) is ignored. Every variable of the
    model must be in it (AssertionError otherwise; ValueError when a shape differs)."""
    tf.train.Checkpoint(model=model, step=step).restore(prefix).expect_partial().assert_existing_objects_matched()


def resolve_init_source(source):
    """Where `TrainConfig.init_from` points: (directory holding the source's config.json, checkpoint prefix).

    `source` is, in this order of precedence, a run directory (its latest checkpoint), a shipped model's directory,
    a checkpoint prefix (RUN/checkpoints/ckpt-N, or a shipped model's weights), or a shipped model's name
    (`trainers.pretrained`, e.g. 'mnist'). CheckpointError names what is wrong with it.
    """
    from trainers import pretrained

    if os.path.isdir(source):
        prefix = tf.train.latest_checkpoint(os.path.join(source, "checkpoints"))
        if prefix is None and tf.io.gfile.exists(os.path.join(source, pretrained.WEIGHTS) + ".index"):
            prefix = os.path.join(source, pretrained.WEIGHTS)
        if prefix is None:
            raise CheckpointError(f"init_from {source!r}: the directory has no checkpoint (train it first)")
        return source, prefix
    if tf.io.gfile.exists(source + ".index"):
        parent = os.path.dirname(os.path.abspath(source))
        directory = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else parent
        return directory, source
    if source in pretrained.available():
        return pretrained.locate(source)
    shipped = ", ".join(pretrained.available()) or "none"
    raise CheckpointError(f"init_from {source!r} is not a run directory, a checkpoint prefix or a shipped model "
                          f"(shipped: {shipped})")
