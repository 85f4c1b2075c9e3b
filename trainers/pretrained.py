"""Pretrained models that ship inside the package, loaded by name without training (BUILD.md, "Pretrained models").

A shipped model is a directory `trainers/pretrained_models/<name>/` that looks like a run directory to every tool:

    config.json        the run's resolved `TrainConfig` (its data_dir is where it was trained, not needed here)
    weights.index      a weights-only `tf.train.Checkpoint(model=..., step=...)` (no optimizer slots: a third of
    weights.data-*     the size of a training checkpoint)
    provenance.json    how it was made: preset, seed, steps, data, training wall-clock, the commit that trained it,
                       the held-out figures measured when it was packaged, and the command that reproduces it

`load(name)` returns (model, config, step) like `checkpoints.load_model`; `sqair-eval --pretrained NAME` and
`sqair-export --pretrained NAME` use `locate(name)`. `tools/package_pretrained.py` writes such a directory from a
training run.
"""

import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained_models")
WEIGHTS = "weights"


class PretrainedError(Exception):
    """Unknown or incomplete pretrained model."""


def available():
    """Names of the shipped models."""
    if not os.path.isdir(ROOT):
        return []
    return sorted(name for name in os.listdir(ROOT) if os.path.exists(os.path.join(ROOT, name, "config.json")))


def locate(name):
    """(directory, weights prefix) of the shipped model `name`; PretrainedError if it is not there."""
    directory = os.path.join(ROOT, str(name))
    prefix = os.path.join(directory, WEIGHTS)
    if name not in available() or not os.path.exists(prefix + ".index"):
        raise PretrainedError(f"no pretrained model {name!r}; shipped: {', '.join(available()) or 'none'}")
    return directory, prefix


def provenance(name):
    """The provenance record of the shipped model `name` (dict)."""
    directory, _ = locate(name)
    with open(os.path.join(directory, "provenance.json")) as f:
        return json.load(f)


def load(name="mnist"):
    """Builds the shipped model `name` and restores its weights; returns (model, config, step).

    >>> model, config, step = load("mnist")
    >>> outputs = model(frames, seed=tf.constant([0, 0]), num_particles=5)  # frames [B, T, 50, 50, 1] in [0, 1]
    """
    from trainers import checkpoints

    directory, prefix = locate(name)
    return checkpoints.load_model(directory, prefix)
