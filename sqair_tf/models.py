"""The models of this package by name: what `TrainConfig.model_name` (and `sqair-train --model`) chooses.

Each entry pairs an `interface.SequenceModel` subclass with its frozen config class and named config presets
(`paper`: the size of the paper's model; `debug`: a tiny one for tests). BUILD.md "Models" describes each. Model
classes are imported when a model is built, so reading or validating a config does not import TensorFlow.
"""

import dataclasses
import importlib
import typing

from sqair_tf import config as config_lib


class Entry(typing.NamedTuple):
    model_class: str  # "module:Class", imported by `build`
    config_class: type
    presets: dict  # preset name → config instance
    layer_name: str  # the Keras name of the built model
    architecture: str  # the config's `architecture` the name implies ('mlp' or 'conv')


_ENTRIES = {
    "mlp-sqair": Entry("sqair_tf.model:SQAIR", config_lib.ModelConfig, config_lib.PRESETS, "sqair", "mlp"),
    "conv-sqair": Entry("sqair_tf.model:SQAIR", config_lib.ModelConfig, config_lib.CONV_PRESETS, "sqair", "conv"),
    "mlp-air": Entry("sqair_tf.air:AIR", config_lib.ModelConfig, config_lib.PRESETS, "air", "mlp"),
    "mlp-vrnn": Entry("sqair_tf.vrnn:VRNN", config_lib.VRNNConfig, config_lib.VRNN_PRESETS, "vrnn", "mlp"),
    "conv-vrnn": Entry("sqair_tf.vrnn:VRNN", config_lib.VRNNConfig, config_lib.CONV_VRNN_PRESETS, "vrnn", "conv"),
}
DEFAULT = "mlp-sqair"


def names():
    """The registered model names, sorted."""
    return sorted(_ENTRIES)


def entry(name):
    """The registry entry of `name`; a ValueError listing the known names otherwise."""
    if name not in _ENTRIES:
        raise ValueError(f"unknown model {name!r}; choose from {names()}")
    return _ENTRIES[name]


def config_class(name):
    """The frozen config dataclass of model `name`."""
    return entry(name).config_class


def check_config(name, config):
    """A ValueError unless `config` is a config of model `name` (its class and the architecture its name implies)."""
    e = entry(name)
    if not isinstance(config, e.config_class):
        raise ValueError(f"model {name!r} needs a {e.config_class.__name__} model config, got a "
                         f"{type(config).__name__}")
    if config.architecture != e.architecture:
        raise ValueError(f"model {name!r} has the {e.architecture!r} architecture, but its config says "
                         f"architecture={config.architecture!r}")


def model_class(name):
    """The `SequenceModel` subclass of model `name`."""
    module, _, attribute = entry(name).model_class.partition(":")
    return getattr(importlib.import_module(module), attribute)


def preset(name, preset_name="paper", **overrides):
    """Model `name`'s config preset `preset_name` with field overrides."""
    presets = entry(name).presets
    if preset_name not in presets:
        raise ValueError(f"model {name!r} has no config preset {preset_name!r}; choose from {sorted(presets)}")
    return dataclasses.replace(presets[preset_name], **overrides)


def build(name, config, mean_image=None):
    """An unbuilt model `name` with `config` (of the model's config class) and an optional mean image [H, W, C]."""
    check_config(name, config)
    e = entry(name)
    return model_class(name)(config, mean_image=mean_image, name=e.layer_name)
