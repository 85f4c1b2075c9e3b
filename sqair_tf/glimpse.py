"""Per-object glimpse networks of MLP-SQAIR and the additive renderer (BUILD.md O2.4, O2.5).

* `GlimpseEncoder` ("AIREncoder", one instance shared by DISC and PROP): flattened G×G×C glimpse, optionally
  multiplied by a soft mask → MLP (256, 256, ELU) → Linear 2·|z_what| → location and
  std = softplus(·) + 0.01 of a diagonal Gaussian over z_what.
* `GlimpseMask` (PROP only): MLP (128, ELU) → G·G sigmoid on the object's temporal state, output bias
  initialised to 1, so that PROP can attend to its own object inside a crowded glimpse.
* `GlimpseDecoder`: z_what → MLP (256, 256, ELU) → Linear G·G·C, times a learnable scalar `output_scale`
  (init 0.25). Linear output: no sigmoid and no clipping, intensities are unbounded (BUILD.md O2.4, O7.8).
* `compose` / `Renderer`: inverse-warp every slot's glimpse into the canvas, multiply by z_pres, sum over the
  N slots (additive composition), and add the learnable mean image only where something was written,
  m = sigmoid(−10 + 20·Σ_n z_pres_n·render(1)_n).

Glimpse extraction itself (image + z_where → glimpse) is `spatial_transformer.extract_glimpses`; callers
extract, then encode, which keeps the encoder a plain network that DISC and PROP share.

All layers emit tensors (locations and scales, never distributions: distributions are built where they are
scored). Sizes are constructor arguments so tests can use a tiny configuration; the defaults are the paper's
(50×50×1 images, G = 20, |z_what| = 50, hidden 256).
"""
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from sqair_tf import conv as conv_lib
from sqair_tf import networks
from sqair_tf import spatial_transformer

# Written-mask sharpness (BUILD.md O2.4): m = sigmoid(_MASK_OFFSET + _MASK_GAIN·coverage), ≈4.5e-5 where nothing
# is written and ≈1 inside any present glimpse.
_MASK_OFFSET = -10.0
_MASK_GAIN = 20.0


class GlimpseEncoder(keras.layers.Layer):
    """Glimpse → Gaussian posterior statistics of z_what (BUILD.md O2.5, "AIREncoder").

    Args:
      glimpse_size: G.
      num_channels: C.
      z_what_dim: |z_what| (50 in the paper).
      hidden_sizes: ELU hidden layers of the MLP ((256, 256) in the paper).
      min_std: constant added to the softplus std (0.01, non-trainable).
      conv: CONV-SQAIR's encoder (BUILD.md "Models"): 3×3 convolutions with 16, 32, 64 filters and strides 1, 2, 2,
        then the first hidden layer and the output layer; the MLP (the paper's MLP-SQAIR) when False.

    Call:
      glimpses: [..., G, G, C].
      glimpse_mask: optional [..., G, G, 1] (or [..., G, G, C]) soft mask multiplied into the glimpse
        (PROP, BUILD.md O2.5).
    Returns:
      (loc [..., z_what_dim], scale [..., z_what_dim]).
    """

    def __init__(
        self,
        glimpse_size: int = 20,
        num_channels: int = 1,
        z_what_dim: int = 50,
        hidden_sizes: Sequence[int] = (256, 256),
        min_std: float = 0.01,
        conv: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.glimpse_size = networks.check_positive_int(glimpse_size, "glimpse_size")
        self.num_channels = networks.check_positive_int(num_channels, "num_channels")
        self.z_what_dim = networks.check_positive_int(z_what_dim, "z_what_dim")
        if min_std < 0:
            raise ValueError(f"min_std must be >= 0, got {min_std}.")
        self.min_std = float(min_std)
        if conv:
            self.conv = conv_lib.ConvEncoder((16, 32, 64), (3, 3, 3), (1, 2, 2), tuple(hidden_sizes)[:1],
                                             2 * z_what_dim, name="conv", dtype=self.dtype_policy)
        else:
            self.mlp = networks.MLP(
                hidden_sizes, output_size=2 * z_what_dim, name="mlp", dtype=self.dtype_policy
            )

    def call(
        self, glimpses: tf.Tensor, glimpse_mask: Optional[tf.Tensor] = None
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        g, c = self.glimpse_size, self.num_channels
        if glimpses.shape[-3:] != (g, g, c):
            raise ValueError(f"Expected glimpses of shape [..., {g}, {g}, {c}], got {glimpses.shape}.")
        if glimpse_mask is not None:
            glimpses = glimpses * glimpse_mask  # [..., G, G, C]
        if hasattr(self, "conv"):
            stats = self.conv(glimpses)  # [..., 2·z_what_dim]
        else:
            leading = tf.shape(glimpses)[:-3]
            flat = tf.reshape(glimpses, tf.concat([leading, [g * g * c]], axis=0))  # [..., G·G·C]
            stats = self.mlp(flat)  # [..., 2·z_what_dim]
        loc, scale_logit = tf.split(stats, 2, axis=-1)  # [..., z_what_dim] each
        return loc, tf.nn.softplus(scale_logit) + self.min_std


class GlimpseMask(keras.layers.Layer):
    """Temporal state → soft G×G attention mask over a glimpse (BUILD.md O2.5, PROP only).

    Args:
      glimpse_size: G.
      hidden_sizes: ELU hidden layers ((128,) in the paper).
      output_bias_init: initial bias of the sigmoid output (1 in the original: the mask starts ≈0.73).

    Call: `temporal_state` [..., U] (the object's temporal GRU state from t−1) -> [..., G, G, 1], broadcast
    over the glimpse channels.
    """

    def __init__(
        self,
        glimpse_size: int = 20,
        hidden_sizes: Sequence[int] = (128,),
        output_bias_init: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.glimpse_size = networks.check_positive_int(glimpse_size, "glimpse_size")
        self.mlp = networks.MLP(
            hidden_sizes,
            output_size=glimpse_size * glimpse_size,
            output_bias_init=output_bias_init,
            output_activation="sigmoid",
            name="mlp",
            dtype=self.dtype_policy,
        )

    def call(self, temporal_state: tf.Tensor) -> tf.Tensor:
        g = self.glimpse_size
        mask = self.mlp(temporal_state)  # [..., G·G]
        leading = tf.shape(mask)[:-1]
        return tf.reshape(mask, tf.concat([leading, [g, g, 1]], axis=0))  # [..., G, G, 1]


class GlimpseDecoder(keras.layers.Layer):
    """z_what → glimpse intensities (BUILD.md O2.4).

    Args:
      glimpse_size: G.
      num_channels: C.
      hidden_sizes: ELU hidden layers ((256, 256) in the paper).
      output_scale_init: initial value of the learnable scalar multiplying the linear output (0.25).
      conv: CONV-SQAIR's sub-pixel decoder (BUILD.md "Models"): the first hidden layer, a (G/4)×(G/4)×32 map and
        two ×2 sub-pixel stages (16 channels, then C); the MLP (the paper's MLP-SQAIR) when False.

    Call: `z_what` [..., z_what_dim] -> [..., G, G, C], linear (unbounded) intensities × output_scale.
    """

    def __init__(
        self,
        glimpse_size: int = 20,
        num_channels: int = 1,
        hidden_sizes: Sequence[int] = (256, 256),
        output_scale_init: float = 0.25,
        conv: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.glimpse_size = networks.check_positive_int(glimpse_size, "glimpse_size")
        self.num_channels = networks.check_positive_int(num_channels, "num_channels")
        if conv:
            if glimpse_size % 4:
                raise ValueError(f"the sub-pixel glimpse decoder needs a glimpse size divisible by 4, got {glimpse_size}")
            self.conv = conv_lib.SubpixelDecoder(
                (glimpse_size, glimpse_size, num_channels), tuple(hidden_sizes)[:1],
                (glimpse_size // 4, glimpse_size // 4, 32), ((2, 16), (2, num_channels)), name="conv",
                dtype=self.dtype_policy)
        else:
            self.mlp = networks.MLP(
                hidden_sizes,
                output_size=glimpse_size * glimpse_size * num_channels,
                name="mlp",
                dtype=self.dtype_policy,
            )
        self.output_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(float(output_scale_init)),
            name="output_scale",
        )

    def call(self, z_what: tf.Tensor) -> tf.Tensor:
        g, c = self.glimpse_size, self.num_channels
        if hasattr(self, "conv"):
            return self.conv(z_what) * self.output_scale  # [..., G, G, C]
        flat = self.mlp(z_what) * self.output_scale  # [..., G·G·C]
        leading = tf.shape(flat)[:-1]
        return tf.reshape(flat, tf.concat([leading, [g, g, c]], axis=0))  # [..., G, G, C]


def glimpse_networks(config) -> Tuple[GlimpseEncoder, GlimpseDecoder]:
    """The glimpse encoder and decoder as a `ModelConfig` sizes them (two hidden layers of `hidden_size`; CONV-SQAIR's
    when `architecture` is "conv", BUILD.md "Models"): the same two layers in MLP-SQAIR and in MLP-AIR."""
    h, g, c = config.hidden_size, config.glimpse_size, config.image_shape[2]
    conv = config.architecture == "conv"
    encoder = GlimpseEncoder(g, c, config.z_what_dim, (h, h), config.min_std, conv, name="glimpse_encoder")
    decoder = GlimpseDecoder(g, c, (h, h), config.output_scale_init, conv, name="decoder")
    return encoder, decoder


def compose(
    glimpses: tf.Tensor, z_where: tf.Tensor, z_pres: tf.Tensor, mean_image: tf.Tensor, shift_range: float = 1.0
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Additive composition of N object glimpses plus the mean image under the written mask (BUILD.md O2.4).

    canvas = Σ_n z_pres_n · render(glimpse_n, z_where_n) + mean_image · m,
    m      = sigmoid(−10 + 20 · Σ_n z_pres_n · render(ones, z_where_n)).

    Absent slots (z_pres = 0) contribute nothing to either sum; with no object present the canvas is
    mean_image · sigmoid(−10) everywhere.

    Args:
      glimpses: [..., N, G, G, C] decoded glimpses (in the model [BK, N, G, G, C]).
      z_where: [..., N, 4] where logits (s_x, s_y, t_x, t_y).
      z_pres: [..., N] presence in {0, 1} (any float weight works).
      mean_image: [H, W, C] (or broadcastable to [..., H, W, C]); its spatial size sets the canvas size.
      shift_range: c of `spatial_transformer.where_to_transform`.

    Returns:
      canvas: [..., H, W, C], the mean of the Gaussian likelihood.
      written_mask: [..., H, W, 1], m above.
    """
    glimpses = tf.convert_to_tensor(glimpses)
    dtype = glimpses.dtype
    z_where = tf.cast(z_where, dtype)
    z_pres = tf.cast(z_pres, dtype)
    mean_image = tf.cast(mean_image, dtype)
    height, width = mean_image.shape[-3], mean_image.shape[-2]
    # render(g) = K_y · g · K_xᵀ per slot (spatial_transformer.render_kernels). Two exact rewrites save work:
    # the sum over slots folds into the second contraction (over slot and glimpse column together), and
    # render(ones) = (K_y·1)(K_x·1)ᵀ is an outer product of kernel row sums.
    kernel_y, kernel_x = spatial_transformer.render_kernels(
        z_where, glimpses.shape[-3:-1], (height, width), shift_range)  # [..., N, H, G], [..., N, W, G]
    rows = tf.einsum("...niy,...nyxc->...nixc", kernel_y, glimpses)  # [..., N, H, G, C]
    rows = rows * z_pres[..., None, None, None]
    canvas = tf.einsum("...njx,...nixc->...ijc", kernel_x, rows)  # [..., H, W, C]
    coverage_y = tf.reduce_sum(kernel_y, axis=-1) * z_pres[..., None]  # [..., N, H]
    coverage = tf.einsum("...ni,...nj->...ij", coverage_y, tf.reduce_sum(kernel_x, axis=-1))  # [..., H, W]
    written_mask = tf.sigmoid(_MASK_OFFSET + _MASK_GAIN * coverage)[..., None]  # [..., H, W, 1]
    return canvas + mean_image * written_mask, written_mask


# On an imagined frame (nothing observed), a rendered pixel brighter than this counts as drawn by its object (frames
# are in [0, 1]); on observed frames the box is the pixels the object explains (below). The decoder draws a
# digit with a soft halo, so a low threshold gives boxes wider than the digit's pixels: chosen on the *training*
# split by MOTA of the `tracking` run's checkpoints (300 sequences, T = 10, K = 5; benchmarks/RESULTS.md, issue 10):
# at step 12,000, 0.1 → 0.461, 0.15 → 0.523, 0.2 → 0.541, 0.25 → 0.548, 0.3 → 0.510; at step 10,000, 0.1 → 0.457,
# 0.2 → 0.547, 0.3 → 0.517. 0.2 sits on the plateau. Checked again on 1,000 training sequences with three later
# models (20,000–30,000 steps): 0.25 is ahead by 0.002–0.010 MOTA and behind by up to 0.006 HOTA, so 0.2 stays.
DRAWN_THRESHOLD = 0.2


# On an observed frame, an object's box covers the frame's foreground pixels (brighter than FOREGROUND_THRESHOLD:
# the data's background is exactly 0, moving-MNIST's and the video pre-processing's alike) where the object renders
# more than EXPLAINED_THRESHOLD and no other object renders more: the pixels it explains. Chosen on the first 1,000
# *training* sequences (shipped model, refined, benchmarks/RESULTS.md "Boxes of the pixels an object explains"):
# MOTA 0.8945, 0.8943, 0.8941, 0.8937 at 0.002, 0.005, 0.01, 0.03 against 0.8735 for the drawn box; 0.01 is inside
# the plateau.
EXPLAINED_THRESHOLD = 0.01
FOREGROUND_THRESHOLD = 0.5 / 255

# A blob of ink (8-connected foreground pixels) of which one object explains at least this share of the explained
# pixels is that object's: the others' pixels in it go to it, unless they are all an object explains (it
# keeps them, and stays a detection). Where two objects split two digits' ink wrongly (one takes its digit and a
# piece of the other), the piece goes back to the digit's own object. Chosen on the first 1,000 *training* sequences
# (shipped model, refined, benchmarks/RESULTS.md "Blobs of ink"), with the blob given whole: MOTA 0.8941 without,
# 0.8920, 0.9086, 0.9142, 0.9139, 0.9136, 0.9072, 0.9014 at 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95; 0.8 is inside the
# plateau. Letting the objects it would empty keep their pixels (the rule) gives 0.8989, 0.9059, 0.9079, 0.9071,
# 0.9063, 0.9029 at 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, less than giving the whole blob, but it leaves the frames whose
# detections number the visible digits as they were (0.9803), where giving the whole blob drops them to 0.9712.
MAJORITY_SHARE = 0.8


def box_rule():
    """The rule `drawn_boxes` applies, for records that hold figures measured with it (provenance, benchmarks)."""
    return {"observed_frames": "explained", "explained_threshold": EXPLAINED_THRESHOLD,
            "foreground_threshold": FOREGROUND_THRESHOLD, "majority_share": MAJORITY_SHARE,
            "imagined_frames": "drawn", "drawn_threshold": DRAWN_THRESHOLD}


COMPONENTS_SCOPE = "foreground_components"


def _frame_offsets(frames, size: int) -> tf.Tensor:
    """[F, 1] int32: frame f's H·W + 1 slots (its labels, then background) start at f·(H·W + 1) of a flat array."""
    return tf.range(frames)[:, None] * (size + 1)


def foreground_components(foreground: tf.Tensor) -> tf.Tensor:
    """Labels the 8-connected components of a foreground mask: [..., H, W] bool → [..., H, W] int32.

    A foreground pixel's label is the smallest flat index (row · W + column) of its component, a background pixel's
    is H · W. Each pass takes the smallest label of the 3×3 neighbourhood, then jumps every label to its own pixel's
    label (pointer jumping, so a label can travel further than one pixel a pass); the loop stops when a pass changes
    nothing (22 passes for 500 moving-MNIST test frames).
    """
    foreground = tf.convert_to_tensor(foreground)
    shape = tf.shape(foreground)
    height, width = foreground.shape[-2], foreground.shape[-1]
    size = height * width
    mask = tf.reshape(foreground, [-1, height, width])  # [F, H, W]
    # float32 holds every index exactly (canvases below 2^24 pixels); max-pooling the negated labels is a min-pool.
    index = tf.reshape(tf.range(size, dtype=tf.float32), [1, height, width])
    labels = tf.where(mask, index, float(size))  # [F, H, W]

    frames = tf.shape(mask)[0]
    offset = _frame_offsets(frames, size)  # [F, 1]

    def one_pass(labels):
        smallest = -tf.nn.max_pool2d(-labels[..., None], 3, 1, "SAME")[..., 0]
        labels = tf.where(mask, tf.minimum(labels, smallest), float(size))
        flat = tf.reshape(labels, [frames, size])
        padded = tf.reshape(tf.concat([flat, tf.fill([frames, 1], float(size))], axis=1), [-1])  # H·W → background
        jumped = tf.gather(padded, tf.cast(flat, tf.int32) + offset)  # One flat gather: faster than batch_dims.
        return tf.reshape(jumped, tf.shape(labels))

    def not_done(labels, previous):
        return tf.reduce_any(tf.not_equal(labels, previous))

    with tf.name_scope(COMPONENTS_SCOPE):  # Its loop is not the model's time loop (`unroll_time` keeps it).
        labels, _ = tf.while_loop(not_done, lambda labels, _: (one_pass(labels), labels),
                                  (one_pass(labels), labels))
    return tf.reshape(tf.cast(labels, tf.int32), shape)


def _give_blobs_to_their_majority(mine: tf.Tensor, foreground: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """`mine` [..., N, H, W] bool (the pixels each object explains) with every blob of `foreground` [..., H, W]
    (its `foreground_components` `labels`) of which one object explains at least `MAJORITY_SHARE` of the explained
    pixels given to that object, but for the pixels of objects that explain nothing outside the blob."""
    height, width = foreground.shape[-2], foreground.shape[-1]
    size = height * width
    num_objects = mine.shape[-3]
    labels = tf.reshape(labels, [-1, size])  # [F, H·W]
    frames = tf.shape(labels)[0]
    mine_flat = tf.reshape(mine, [frames, num_objects, size])  # [F, N, H·W]
    owner = tf.transpose(tf.cast(mine_flat, tf.float32), [0, 2, 1])  # [F, H·W, N]
    segment = labels + _frame_offsets(frames, size)  # [F, H·W]; background in each frame's last one
    counts = tf.math.unsorted_segment_sum(owner, segment, frames * (size + 1))  # [F·(H·W + 1), N]
    blob = tf.gather(counts, segment)  # [F, H·W, N]: each pixel's blob's explained pixels per object
    total = tf.reduce_sum(blob, axis=-1)
    pixel_majority = (tf.reduce_max(blob, axis=-1) >= MAJORITY_SHARE * total) & (total > 0)  # [F, H·W]
    pixel_top = tf.one_hot(tf.argmax(blob, axis=-1), num_objects, on_value=True, off_value=False,
                           axis=1)  # [F, N, H·W]
    # An object with no explained pixel outside the blob keeps its own: it stays a detection.
    only_here = blob >= tf.reduce_sum(owner, axis=1, keepdims=True)  # [F, H·W, N]
    kept = mine_flat & tf.transpose(only_here, [0, 2, 1])  # [F, N, H·W]
    explained = tf.reduce_any(mine_flat, axis=1, keepdims=True)  # [F, 1, H·W]
    given = tf.where(pixel_majority[:, None, :], (pixel_top & explained) | kept, mine_flat)
    return tf.reshape(given, tf.shape(mine))


def drawn_boxes(
    glimpses: tf.Tensor, z_where: tf.Tensor, z_pres: tf.Tensor, image_size: Sequence[int],
    threshold: Optional[float] = None, shift_range: float = 1.0, frames: Optional[tf.Tensor] = None,
    frame_repeats: int = 1,
) -> tf.Tensor:
    """Boxes of the canvas pixels that each present object draws, or, on observed frames, explains.

    The glimpse box (`spatial_transformer.boxes_from_where`) is the footprint of the whole G×G glimpse, larger than
    the object it holds and not clipped to the canvas; tracking metrics compare against the tight boxes of the
    digits' drawn pixels, so the object's box is taken from what it renders (BUILD.md "Boxes"):

    * without `frames` (an imagined frame), the bounding box of its rendered glimpse's pixels above `threshold`
      (default `DRAWN_THRESHOLD`, any channel);
    * with `frames` (the frames the objects were inferred from), the bounding box of the frame's foreground pixels
      (any channel above `FOREGROUND_THRESHOLD`) that the object explains: it renders more than `threshold`
      (default `EXPLAINED_THRESHOLD`) there, and no other object of the frame renders more. The decoder's soft
      halo and faint rims then cost nothing, and where two objects overlap each keeps the pixels it draws
      brightest. A blob of ink (8-connected foreground pixels) of which one object explains at least
      `MAJORITY_SHARE` of the explained pixels is then that object's, but for the pixels of objects that explain
      nothing outside it.

    Either box is inside the canvas by construction.

    Args:
      glimpses: [..., N, G, G, C] decoded glimpses; z_where: [..., N, 4] logits; z_pres: [..., N].
      image_size: (H, W) of the canvas.
      threshold: intensity above which a rendered pixel counts as the object's (None: the rule's default above).
      shift_range: c of `spatial_transformer.where_to_transform`.
      frames: optional [..., H, W, C] observed frames, leading axes those of `z_pres` without N; or, with
        `frame_repeats` r, one frame per r consecutive entries of the last leading axis (entry i reads frame i // r:
        the particle rows b·K + k of one sequence b), so that each frame's blobs are labelled once.

    Returns:
      [..., N, 4] (y_min, x_min, y_max, x_max) in pixels with the max exclusive (the data's ground-truth
      convention), dtype of `glimpses`; all zeros for an absent object or one that draws (explains) nothing.
    """
    glimpses = tf.stop_gradient(tf.convert_to_tensor(glimpses))
    height, width = (int(v) for v in image_size)
    rendered = tf.reduce_max(spatial_transformer.render_glimpses(
        glimpses, tf.stop_gradient(tf.cast(z_where, glimpses.dtype)), (height, width),
        shift_range), axis=-1) * tf.cast(tf.cast(z_pres, glimpses.dtype) > 0.5, glimpses.dtype)[..., None, None]
    # rendered: [..., N, H, W], zero for absent slots.
    if frames is None:
        mine = rendered > (DRAWN_THRESHOLD if threshold is None else threshold)  # [..., N, H, W]
    else:
        foreground = tf.reduce_max(tf.cast(frames, glimpses.dtype), axis=-1) > FOREGROUND_THRESHOLD  # [..., H, W]
        labels = foreground_components(foreground)
        if frame_repeats > 1:  # One frame per `frame_repeats` rows: label it once, then repeat.
            foreground = tf.repeat(foreground, frame_repeats, axis=-3)
            labels = tf.repeat(labels, frame_repeats, axis=-3)
        brightest = rendered >= tf.reduce_max(rendered, axis=-3, keepdims=True)  # [..., N, H, W]
        mine = (rendered > (EXPLAINED_THRESHOLD if threshold is None else threshold)) & brightest
        mine = _give_blobs_to_their_majority(mine & foreground[..., None, :, :], foreground, labels)

    def extent(mask, size):  # mask [..., N, size] → first index and last index + 1 (0, 0 when empty)
        index = tf.range(size)
        first = tf.reduce_min(tf.where(mask, index, size), axis=-1)
        end = tf.reduce_max(tf.where(mask, index + 1, 0), axis=-1)
        return tf.where(tf.reduce_any(mask, axis=-1), first, 0), end

    y_min, y_max = extent(tf.reduce_any(mine, axis=-1), height)  # [..., N] each
    x_min, x_max = extent(tf.reduce_any(mine, axis=-2), width)
    return tf.cast(tf.stack([y_min, x_min, y_max, x_max], axis=-1), glimpses.dtype)  # [..., N, 4]


def shows_something(boxes):
    """Whether each `drawn_boxes` box is non-empty: [..., N] bool (NumPy arrays or tensors).

    A present object whose drawn box is empty draws no canvas pixel above the threshold: its glimpse is off the
    canvas (SQAIR keeps an object while its digit is out of view and brings it back when it returns), or it draws
    too faintly. It makes no claim about the frame, so it is not a detection: the tracking metrics and `sqair-track`
    skip it, as the ground truth skips digits out of view (BUILD.md, "Boxes").
    """
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


class Renderer(keras.layers.Layer):
    """Owns the learnable mean image and composes object glimpses into the canvas (BUILD.md O2.4).

    Args:
      image_shape: (H, W, C) of the canvas.
      mean_image_init: optional [H, W, C] array, the initial mean image (the original uses the per-pixel
        mean of all training frames); zeros if None.
      shift_range: c of `spatial_transformer.where_to_transform` (`ModelConfig.where_shift_range`).

    Call:
      glimpses: [..., N, G, G, C]; z_where: [..., N, 4] logits; z_pres: [..., N].
    Returns:
      canvas [..., H, W, C] (see `compose`).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (50, 50, 1),
        mean_image_init: Optional[np.ndarray] = None,
        shift_range: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        image_shape = tuple(image_shape)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {image_shape}.")
        for name, value in zip(("H", "W", "C"), image_shape):
            networks.check_positive_int(value, f"image_shape {name}")
        if image_shape[0] < 2 or image_shape[1] < 2:
            raise ValueError(f"image_shape must be at least 2x2, got {image_shape}.")
        self.image_shape = tuple(int(v) for v in image_shape)
        self.shift_range = float(shift_range)
        if mean_image_init is None:
            initializer = "zeros"
        else:
            mean_image_init = np.asarray(mean_image_init)
            if mean_image_init.shape != self.image_shape:
                raise ValueError(
                    f"mean_image_init has shape {mean_image_init.shape}, expected {self.image_shape}."
                )

            def initializer(shape, dtype=None):
                return tf.constant(mean_image_init, dtype=dtype, shape=shape)

        self.mean_image = self.add_weight(shape=self.image_shape, initializer=initializer, name="mean_image")
        self.built = True

    def call(self, glimpses: tf.Tensor, z_where: tf.Tensor, z_pres: tf.Tensor) -> tf.Tensor:
        canvas, _ = compose(glimpses, z_where, z_pres, self.mean_image, self.shift_range)
        return canvas  # [..., H, W, C]
