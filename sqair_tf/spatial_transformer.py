"""Spatial transformer for SQAIR: glimpse extraction, glimpse rendering and box conversion.

SQAIR (like AIR) reads an object through a differentiable crop (the "forward" spatial transformer) and writes a
decoded glimpse back into the canvas through the inverse crop (BUILD.md O2.3, paper §2). The transform has no
shear or rotation: per axis, a normalised coordinate u of the output grid maps to the normalised source
coordinate s·u + t. Because the map is axis-aligned, bilinear sampling is *separable*:

    glimpse[i, j] = Σ_y Σ_x Ky[i, y] · image[y, x] · Kx[j, x],   K[i, y] = relu(1 − |src_i − y|),

where src_i is the (fractional) source pixel sampled by output row/column i. Zero padding outside the image
falls out for free: neighbours outside the image are simply not part of the sum. Two batched matrix products
replace the gather/scatter of a general resampler, which is faster in both directions and compiles under XLA
(see /work/shared/docs/stack_notes.md, "Spatial transformer").

Conventions (those of the original code, Sonnet's `AffineGridWarper` + `tf.contrib.resampler`):
  * `z_where` holds *logits* ordered (s_x, s_y, t_x, t_y); scale = sigmoid, shift = tanh (BUILD.md O2.3). x is the
    width/column axis, y the height/row axis. Every function takes `shift_range` c (default 1, the paper's):
    shift = c·tanh(logit/c), so with c > 1 a glimpse's centre can lie up to c − 1 half-widths beyond the canvas
    (BUILD.md "Options beyond the paper").
  * The output grid is `linspace(-1, 1, n)` per axis; a normalised coordinate c maps to pixel index
    (c + 1)·(n_src − 1)/2 of the source, i.e. ±1 are the centres of the first/last pixel.
  * Rendering samples the glimpse at ((v − t)/s) for every canvas coordinate v.

Every function accepts arbitrary leading batch axes ("...", in the model this is the flat `BK` axis or
`[BK, N]`); the leading axes of the pixels and of `z_where` broadcast, so N glimpses can be read from one
image without tiling it (images [BK, 1, H, W, C], z_where [BK, N, 4]). Every function works in float32 and
float64 (the dtype of the image/glimpse tensor; `z_where` must match), is differentiable w.r.t. both the pixels and
`z_where`, and runs under `jit_compile=True`. Spatial sizes must be static.

One difference from `tf.contrib.resampler`: at a source coordinate that falls *exactly* on a pixel centre the
relu kernel has a kink, and TF's sub-gradients of `abs`/`relu` there give a zero derivative w.r.t. the
position, whereas the resampler returns the one-sided (right) derivative. This affects a set of measure zero
of `z_where` values (sigmoid/tanh of continuous Gaussian samples never land there in practice); values agree
everywhere.
"""
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

# Scales are floored here (BUILD.md O2.3) so that rendering, which divides by the scale, stays finite.
MIN_SCALE = 1e-4


def where_to_transform(z_where_logits: tf.Tensor, shift_range: float = 1.0) -> Tuple[tf.Tensor, tf.Tensor]:
    """Converts z_where logits to transformer scale and shift (BUILD.md O2.3).

    Args:
      z_where_logits: [..., 4] logits ordered (s_x, s_y, t_x, t_y).
      shift_range: c > 0; shift = c·tanh(logit/c). With c = 1 (the paper) the glimpse's centre stays inside the
        canvas; c = 2 lets it follow an object whose centre has left the canvas by up to one half-width, and is
        ≈ the identity near the centre (c·tanh(u/c) = u − u³/(3c²) + …).

    Returns:
      scale: [..., 2] ordered (x, y), sigmoid(logit) floored at `MIN_SCALE` with a straight-through clip:
        the forward value is clipped, the gradient is that of the unclipped sigmoid (as in the original, so
        a collapsed glimpse can still grow back).
      shift: [..., 2] ordered (x, y), c·tanh(logit/c) ∈ (−c, c).
    """
    z_where_logits = tf.convert_to_tensor(z_where_logits)
    scale = tf.sigmoid(z_where_logits[..., :2])
    # Straight-through clip: forward = max(scale, MIN_SCALE), d/dscale = 1.
    scale = scale + tf.stop_gradient(tf.maximum(scale, MIN_SCALE) - scale)
    if shift_range == 1.0:  # The paper's transform, op for op.
        shift = tf.tanh(z_where_logits[..., 2:])
    else:
        shift = shift_range * tf.tanh(z_where_logits[..., 2:] / shift_range)
    return scale, shift


def _grid(size: int, dtype: tf.DType) -> tf.Tensor:
    """[size] normalised output grid, `linspace(-1, 1, size)` (Sonnet's AffineGridWarper convention)."""
    return tf.constant(np.linspace(-1.0, 1.0, size), dtype=dtype)


def _interpolation_kernel(src_normalised: tf.Tensor, src_size: int) -> tf.Tensor:
    """Separable bilinear kernel with zero padding.

    Args:
      src_normalised: [..., n_out] normalised source coordinates sampled by each output row/column.
      src_size: number of source pixels along this axis.

    Returns:
      [..., n_out, src_size] kernel K[i, y] = relu(1 − |p_i − y|), with p_i = (c_i + 1)(src_size − 1)/2.
    """
    dtype = src_normalised.dtype
    src_pixel = (src_normalised + 1.0) * (0.5 * (src_size - 1))  # [..., n_out]
    pixel_centres = tf.range(src_size, dtype=dtype)  # [src_size]
    return tf.nn.relu(1.0 - tf.abs(src_pixel[..., :, None] - pixel_centres))  # [..., n_out, src_size]


def _separable_sample(
    source: tf.Tensor, kernel_y: tf.Tensor, kernel_x: tf.Tensor
) -> tf.Tensor:
    """out[..., i, j, c] = Σ_{y,x} kernel_y[..., i, y] · source[..., y, x, c] · kernel_x[..., j, x].

    Args:
      source: [..., h_src, w_src, C].
      kernel_y: [..., h_out, h_src].
      kernel_x: [..., w_out, w_src].

    Returns:
      [..., h_out, w_out, C].
    """
    rows = tf.einsum("...iy,...yxc->...ixc", kernel_y, source)  # [..., h_out, w_src, C]
    return tf.einsum("...jx,...ixc->...ijc", kernel_x, rows)  # [..., h_out, w_out, C]


def _check_inputs(pixels: tf.Tensor, z_where: tf.Tensor, what: str) -> Tuple[tf.Tensor, tf.Tensor]:
    pixels = tf.convert_to_tensor(pixels)
    z_where = tf.convert_to_tensor(z_where, dtype_hint=pixels.dtype)
    if not pixels.dtype.is_floating:
        raise ValueError(f"{what} must be a floating tensor, got dtype {pixels.dtype.name}.")
    if z_where.dtype != pixels.dtype:
        raise ValueError(
            f"z_where dtype {z_where.dtype.name} does not match {what} dtype {pixels.dtype.name}."
        )
    if pixels.shape.rank is None or pixels.shape.rank < 3:
        raise ValueError(f"{what} must have shape [..., H, W, C], got {pixels.shape}.")
    if None in pixels.shape[-3:-1].as_list():
        raise ValueError(f"{what} spatial size must be static, got {pixels.shape}.")
    if z_where.shape[-1] is not None and z_where.shape[-1] != 4:
        raise ValueError(f"z_where must have shape [..., 4], got {z_where.shape}.")
    return pixels, z_where


def extract_glimpses(images: tf.Tensor, z_where: tf.Tensor, glimpse_size: int, shift_range: float = 1.0) -> tf.Tensor:
    """Reads a G×G glimpse from each image at the box given by `z_where` (forward transformer, BUILD.md O2.3).

    Glimpse pixel (i, j), with grid coordinates (u_y[i], u_x[j]) ∈ [−1, 1]², is the bilinear sample of the
    image at normalised (s_x·u_x + t_x, s_y·u_y + t_y), zero outside the image.

    Args:
      images: [..., H, W, C] float32/float64 (in the model: [BK, H, W, C]).
      z_where: [..., 4] logits (s_x, s_y, t_x, t_y), same dtype as `images`; leading axes broadcast
        against those of `images`.
      glimpse_size: G, side of the square glimpse (≥ 2).
      shift_range: c of `where_to_transform`.

    Returns:
      [..., G, G, C] glimpses ("..." = broadcast of the leading axes of `images` and `z_where`).
    """
    if glimpse_size < 2:
        raise ValueError(f"glimpse_size must be >= 2, got {glimpse_size}.")
    images, z_where = _check_inputs(images, z_where, "images")
    kernel_y, kernel_x = _extraction_kernels(z_where, glimpse_size, images.shape[-3], images.shape[-2], shift_range)
    return _separable_sample(images, kernel_y, kernel_x)  # [..., G, G, C]


def _extraction_kernels(z_where: tf.Tensor, glimpse_size: int, height: int, width: int, shift_range: float = 1.0):
    """The separable kernels of glimpse extraction: kernel_y [..., G, H] and kernel_x [..., G, W]."""
    scale, shift = where_to_transform(z_where, shift_range)  # [..., 2] each, (x, y)
    grid = _grid(glimpse_size, z_where.dtype)  # [G]
    src_x = scale[..., 0:1] * grid + shift[..., 0:1]  # [..., G]
    src_y = scale[..., 1:2] * grid + shift[..., 1:2]  # [..., G]
    return _interpolation_kernel(src_y, height), _interpolation_kernel(src_x, width)


def extract_glimpses_shared(
    images: tf.Tensor, z_where: tf.Tensor, glimpse_size: int, shift_range: float = 1.0
) -> tf.Tensor:
    """`extract_glimpses` for boxes that share images: every image is read by K consecutive rows of `z_where`.

    In SQAIR the K particles of a sequence (rows b·K … b·K + K − 1) look at the same frame. Rather than tiling
    the frame K times (and, under XLA, materialising a broadcast copy per glimpse), the row kernels of all boxes
    on one image are stacked, so the first contraction is one [M·G, H] × [H, W·C] product per image; the second is
    per box as in `extract_glimpses`. Values equal `extract_glimpses(tf.repeat(images, K, 0), z_where, G)`.

    Args:
      images: [B, H, W, C].
      z_where: [B·K, ..., 4] logits (s_x, s_y, t_x, t_y), same dtype; any box axes after the first.
      glimpse_size: G (≥ 2).
      shift_range: c of `where_to_transform`.

    Returns:
      [B·K, ..., G, G, C].
    """
    if glimpse_size < 2:
        raise ValueError(f"glimpse_size must be >= 2, got {glimpse_size}.")
    images, z_where = _check_inputs(images, z_where, "images")
    if images.shape.rank != 4:
        raise ValueError(f"images must have shape [B, H, W, C], got {images.shape}.")
    height, width, channels = images.shape[-3:]
    g = glimpse_size
    num_images = tf.shape(images)[0]
    boxes = tf.reshape(z_where, tf.stack([num_images, -1, 4]))  # [B, M, 4], M = K·(box axes)
    kernel_y, kernel_x = _extraction_kernels(boxes, g, height, width, shift_range)  # [B, M, G, H], [B, M, G, W]
    rows = tf.matmul(tf.reshape(kernel_y, tf.stack([num_images, -1, height])),
                     tf.reshape(images, tf.stack([num_images, height, -1])))  # [B, M·G, W·C]
    rows = tf.reshape(rows, tf.concat([tf.shape(boxes)[:2], [g, width, channels]], axis=0))  # [B, M, G, W, C]
    glimpses = tf.einsum("bmjx,bmixc->bmijc", kernel_x, rows)  # [B, M, G, G, C]
    return tf.reshape(glimpses, tf.concat([tf.shape(z_where)[:-1], [g, g, channels]], axis=0))


def render_glimpses(
    glimpses: tf.Tensor, z_where: tf.Tensor, image_size: Sequence[int], shift_range: float = 1.0
) -> tf.Tensor:
    """Writes each glimpse into an H×W canvas at the box given by `z_where` (inverse transformer, BUILD.md O2.3).

    Canvas pixel (v_y, v_x), with grid coordinates in [−1, 1]², is the bilinear sample of the glimpse at
    normalised ((v_x − t_x)/s_x, (v_y − t_y)/s_y), zero outside the glimpse. This is the exact inverse of
    the affine map used by `extract_glimpses` (Sonnet's `warper.inverse()`).

    Args:
      glimpses: [..., G, G, C] float32/float64 (in the model: [BK, G, G, C] or [BK, N, G, G, C]).
      z_where: [..., 4] logits (s_x, s_y, t_x, t_y), same dtype as `glimpses`; leading axes broadcast.
      image_size: (H, W) of the canvas, each ≥ 2.
      shift_range: c of `where_to_transform`.

    Returns:
      [..., H, W, C] canvases, one per glimpse (not summed over anything).
    """
    glimpses, z_where = _check_inputs(glimpses, z_where, "glimpses")
    kernel_y, kernel_x = render_kernels(z_where, glimpses.shape[-3:-1], image_size, shift_range)
    return _separable_sample(glimpses, kernel_y, kernel_x)  # [..., H, W, C]


def render_kernels(
    z_where: tf.Tensor, glimpse_size: Sequence[int], image_size: Sequence[int], shift_range: float = 1.0
) -> Tuple[tf.Tensor, tf.Tensor]:
    """The separable kernels of `render_glimpses`: canvas = K_y · glimpse · K_xᵀ.

    Exposed so that a caller can reuse them: rendering an all-ones glimpse is the outer product of their row
    sums (`glimpse.compose` uses this for the written mask), and the sum over object slots can be folded into
    the second contraction.

    Args:
      z_where: [..., 4] logits (s_x, s_y, t_x, t_y); its dtype is the kernels' dtype.
      glimpse_size: (G_h, G_w) of the glimpses.
      image_size: (H, W) of the canvas, each ≥ 2.
      shift_range: c of `where_to_transform`.

    Returns:
      kernel_y [..., H, G_h] and kernel_x [..., W, G_w].
    """
    height, width = (int(v) for v in image_size)
    if height < 2 or width < 2:
        raise ValueError(f"image_size must be >= 2 along both axes, got {tuple(image_size)}.")
    glimpse_h, glimpse_w = (int(v) for v in glimpse_size)
    z_where = tf.convert_to_tensor(z_where)
    scale, shift = where_to_transform(z_where, shift_range)  # [..., 2] each, (x, y)
    dtype = z_where.dtype
    src_x = (_grid(width, dtype) - shift[..., 0:1]) / scale[..., 0:1]  # [..., W]
    src_y = (_grid(height, dtype) - shift[..., 1:2]) / scale[..., 1:2]  # [..., H]
    kernel_x = _interpolation_kernel(src_x, glimpse_w)  # [..., W, G_w]
    kernel_y = _interpolation_kernel(src_y, glimpse_h)  # [..., H, G_h]
    return kernel_y, kernel_x


def boxes_from_where(z_where: tf.Tensor, image_size: Sequence[int], shift_range: float = 1.0) -> tf.Tensor:
    """Pixel bounding boxes of the glimpses, for drawing (the original's `stn_to_pixel_coords`, BUILD.md O2.3).

    Per axis with n source pixels: box size = (n + 1)·s and top-left = 0.5·(n − 1)·(t − s + 1). The top-left
    is the centre of the first sampled pixel; the sampled centres span only (n − 1)·s, so the box reaches 2·s
    past the last one. This is the original's drawing convention, kept so figures compare one to one.

    Args:
      z_where: [..., 4] logits (s_x, s_y, t_x, t_y).
      image_size: (H, W).
      shift_range: c of `where_to_transform`.

    Returns:
      [..., 4] boxes (y_min, x_min, y_max, x_max) in pixels, same dtype as `z_where`.
    """
    height, width = (float(v) for v in image_size)
    scale, shift = where_to_transform(z_where, shift_range)  # [..., 2] each, (x, y)
    x_min = 0.5 * (width - 1.0) * (shift[..., 0] - scale[..., 0] + 1.0)  # [...]
    y_min = 0.5 * (height - 1.0) * (shift[..., 1] - scale[..., 1] + 1.0)  # [...]
    x_max = x_min + (width + 1.0) * scale[..., 0]
    y_max = y_min + (height + 1.0) * scale[..., 1]
    return tf.stack([y_min, x_min, y_max, x_max], axis=-1)  # [..., 4]
