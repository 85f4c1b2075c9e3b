"""Typed, frozen configurations of the models, each with `paper` and `debug` presets (`sqair_tf.models` pairs them
with the model classes).

`ModelConfig` is MLP-SQAIR: its `paper` preset is the model exactly as the authors' released flags describe it
(BUILD.md O2.1); `debug` keeps every mechanism but shrinks every size so tests run in seconds. `VRNNConfig` is the
MLP-VRNN baseline (`sqair_tf/vrnn.py`), whose sizes are this package's choice (BUILD.md "Models").
"""

import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and fixed constants of MLP-SQAIR (defaults = the `paper` preset, BUILD.md O2.1).

    Attributes:
      image_shape: (H, W, C) of the frames.
      num_slots: N, object slots per frame = DISC steps per frame (`n_steps_per_image`).
      z_what_dim: D, size of each object's appearance code.
      glimpse_size: G, side of the square glimpse.
      hidden_size: width of the MLPs and of every RNN (32·`n_units` = 256).
      small_hidden_size: width of the single-hidden-layer MLPs (presence, Δ, glimpse mask: 256/2 = 128).
      prior_hidden_size: width of the DISC where prior's conditioning layer (128).
      count_prior_hidden_size: hidden width of the count prior's MLP (10).
      count_penalty: λ, a cost in nats of each discovered object, subtracted from the log weight the training
        objective sees and not part of the prior (0 in the paper; `priors.discovery_prior_log_prob_parts`,
        BUILD.md "Options beyond the paper").
      output_std: fixed σ of the Gaussian likelihood p(x | z) (0.3).
      output_scale_init: initial value of the learnable scalar multiplying decoded glimpses (0.25).
      where_std_bias_init: initial value of the learnable scalars β, β' added to where-std pre-activations (−3).
      scale_prior: initial mean of the DISC where prior for both scale logits (−2).
      disc_presence_bias: initial DISC presence-logit bias (1).
      prop_presence_bias: initial PROP presence-logit bias (5).
      prop_prior_presence_bias: constant (not learnable) added to the propagation prior's presence logit (10).
      prop_where_std_offset: extra constant added to PROP's where-std pre-activation (−1; BUILD.md O7.7).
      proposal_scale: scale of PROP's proposal offset Δ = 0.1·MLP(h^T) (0.1).
      min_std: constant added to every softplus std (0.01).
      gate_scale: PROP's z_what gates are gate_scale·sigmoid(·) (0.9999).
      gate_bias_init: initial bias of PROP's z_what gates (1).
      mask_bias_init: initial output bias of the glimpse mask (1).
      where_shift_range: c, the glimpse centre's range in canvas half-widths: shift = c·tanh(logit/c)
        (`spatial_transformer.where_to_transform`). 1 in the paper, which keeps every glimpse's centre inside the
        canvas, so an object cannot follow a digit whose centre has left it; 2 lets it (BUILD.md "Options beyond
        the paper").
      architecture: 'mlp' (MLP-SQAIR, the paper's released model) or 'conv' (CONV-SQAIR: convolutional image and
        glimpse encoders and a sub-pixel glimpse decoder, BUILD.md "Models"; needs a glimpse size divisible by 4).
    """

    image_shape: Tuple[int, int, int] = (50, 50, 1)
    num_slots: int = 3
    z_what_dim: int = 50
    glimpse_size: int = 20
    hidden_size: int = 256
    small_hidden_size: int = 128
    prior_hidden_size: int = 128
    count_prior_hidden_size: int = 10
    count_penalty: float = 0.0
    output_std: float = 0.3
    output_scale_init: float = 0.25
    where_std_bias_init: float = -3.0
    scale_prior: float = -2.0
    disc_presence_bias: float = 1.0
    prop_presence_bias: float = 5.0
    prop_prior_presence_bias: float = 10.0
    prop_where_std_offset: float = -1.0
    proposal_scale: float = 0.1
    min_std: float = 0.01
    gate_scale: float = 0.9999
    gate_bias_init: float = 1.0
    mask_bias_init: float = 1.0
    where_shift_range: float = 1.0
    architecture: str = "mlp"

    def __post_init__(self):
        shape = tuple(self.image_shape)
        if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape) or min(shape[:2]) < 2:
            raise ValueError(f"image_shape must be (H, W, C) with H, W ≥ 2 and C ≥ 1, got {self.image_shape}")
        object.__setattr__(self, "image_shape", shape)
        for name in ("num_slots", "z_what_dim", "glimpse_size", "hidden_size", "small_hidden_size",
                     "prior_hidden_size", "count_prior_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.glimpse_size < 2:
            raise ValueError(f"glimpse_size must be ≥ 2, got {self.glimpse_size}")
        if not self.count_penalty >= 0:
            raise ValueError(f"count_penalty must be >= 0, got {self.count_penalty!r}")
        for name in ("output_std", "min_std", "gate_scale", "where_shift_range"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        _check_architecture(self.architecture)
        if self.architecture == "conv" and self.glimpse_size % 4:
            raise ValueError(f"the conv architecture needs a glimpse_size divisible by 4, got {self.glimpse_size}")

    @property
    def num_pixels(self):
        return self.image_shape[0] * self.image_shape[1] * self.image_shape[2]


def _check_architecture(value):
    if value not in ("mlp", "conv"):
        raise ValueError(f"architecture must be 'mlp' or 'conv', got {value!r}")


PRESETS = {
    "paper": ModelConfig(),
    "debug": ModelConfig(image_shape=(32, 32, 1), num_slots=2, z_what_dim=4, glimpse_size=6, hidden_size=16,
                         small_hidden_size=8, prior_hidden_size=8, count_prior_hidden_size=4),
}


CONV_PRESETS = {
    "paper": ModelConfig(architecture="conv"),
    "debug": dataclasses.replace(PRESETS["debug"], architecture="conv", glimpse_size=8),
}


def preset(name, **overrides):
    """A named preset with optional overrides, validated like any config."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


@dataclasses.dataclass(frozen=True)
class VRNNConfig:
    """Sizes and constants of MLP-VRNN (defaults = the `paper` preset; the choices are explained in `sqair_tf/vrnn.py`).

    Attributes:
      image_shape: (H, W, C) of the frames.
      z_dim: Z, the size of the per-frame latent.
      hidden_size: width of every MLP layer and of the GRU.
      output_std: fixed σ of the Gaussian likelihood (SQAIR's 0.3).
      min_std: constant added to every softplus std (SQAIR's 0.01).
      architecture: 'mlp' (MLP-VRNN) or 'conv' (CONV-VRNN: a convolutional frame encoder and a sub-pixel frame
        decoder; needs square frames whose side is divisible by 10 or 8).
    """

    image_shape: Tuple[int, int, int] = (50, 50, 1)
    z_dim: int = 165
    hidden_size: int = 289
    output_std: float = 0.3
    min_std: float = 0.01
    architecture: str = "mlp"

    def __post_init__(self):
        shape = tuple(self.image_shape)
        if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
            raise ValueError(f"image_shape must be (H, W, C) of positive ints, got {self.image_shape}")
        object.__setattr__(self, "image_shape", shape)
        for name in ("z_dim", "hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("output_std", "min_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        _check_architecture(self.architecture)
        if self.architecture == "conv":
            side = shape[0]
            if shape[0] != shape[1] or (side % 10 and side % 8):
                raise ValueError(f"the conv architecture needs square frames with a side divisible by 10 or 8, got "
                                 f"{shape[:2]}")

    @property
    def num_pixels(self):
        return self.image_shape[0] * self.image_shape[1] * self.image_shape[2]


VRNN_PRESETS = {
    "paper": VRNNConfig(),
    "debug": VRNNConfig(image_shape=(32, 32, 1), z_dim=8, hidden_size=16),
}
CONV_VRNN_PRESETS = {
    "paper": VRNNConfig(architecture="conv", hidden_size=308),  # 3,431,224 parameters, CONV-SQAIR's + 0.16 %
    "debug": dataclasses.replace(VRNN_PRESETS["debug"], architecture="conv"),
}
