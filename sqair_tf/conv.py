"""Convolutional encoders and sub-pixel decoders: the CONV variants of SQAIR and VRNN (paper §4.1, Table 1).

The paper's Appendix D, which gives the CONV architectures, was not available, so these are this package's choices
(BUILD.md "Models"), kept small and standard:

- `ConvEncoder`: 'same'-padded convolutions with ELU, each halving the resolution where its stride is 2, then an MLP
  head (`networks.MLP`, ELU hidden layers, optional linear output). It replaces the first layers of an MLP encoder
  and keeps its output contract.
- `SubpixelDecoder`: an MLP to a small map (ELU), then upsampling stages of a 3×3 convolution to r²·c channels and
  `depth_to_space(r)` (sub-pixel convolution, Shi et al. 2016), ELU between stages and a linear last stage.

Both accept any leading axes ([..., H, W, C] in, [..., F] out and back), folded into one batch axis for the
convolutions.
"""

from typing import Optional, Sequence, Tuple

import keras
import tensorflow as tf

from sqair_tf import networks


def _fold(x, inner_rank):
    """[..., *inner] → ([M, *inner], leading shape)."""
    shape = tf.shape(x)
    leading = shape[:tf.rank(x) - inner_rank]
    return tf.reshape(x, tf.concat([[-1], shape[tf.rank(x) - inner_rank:]], axis=0)), leading


class ConvEncoder(keras.layers.Layer):
    """[..., H, W, C] → [..., F]: convolutions (ELU), flatten, MLP head.

    Args:
      filters, kernels, strides: one entry per convolution.
      head_sizes: ELU hidden layers of the head.
      output_size: a linear output layer of this width after the head (None: the head's last ELU is the output).
    """

    def __init__(self, filters: Sequence[int], kernels: Sequence[int], strides: Sequence[int],
                 head_sizes: Sequence[int], output_size: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if not len(filters) == len(kernels) == len(strides):
            raise ValueError(f"filters, kernels and strides need one entry per layer, got {filters}, {kernels}, "
                             f"{strides}")
        self.convs = [keras.layers.Conv2D(networks.check_positive_int(f, "filters"), k, s, padding="same",
                                          name=f"conv_{i}", dtype=self.dtype_policy)
                      for i, (f, k, s) in enumerate(zip(filters, kernels, strides))]
        for i, layer in enumerate(self.convs):  # TF's object graph does not see list elements (networks.MLP).
            setattr(self, f"conv_{i}", layer)
        self.head = networks.MLP(head_sizes, output_size, name="head", dtype=self.dtype_policy)

    def call(self, images):
        x, leading = _fold(images, 3)  # [M, H, W, C]
        for layer in self.convs:
            x = tf.nn.elu(layer(x))
        x = tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]])  # [M, h·w·c]
        features = self.head(x)  # [M, F]
        return tf.reshape(features, tf.concat([leading, [features.shape[-1]]], axis=0))  # [..., F]


class SubpixelDecoder(keras.layers.Layer):
    """[..., D] → [..., H, W, C]: MLP to an h₀×w₀×c₀ map, then sub-pixel upsampling stages.

    Args:
      output_shape: (H, W, C) of the result; H = h₀·Π r and W = w₀·Π r over the stages.
      hidden_sizes: ELU hidden layers before the map.
      base_shape: (h₀, w₀, c₀) of the first map (after an ELU).
      stages: (r, c) per stage: a 3×3 convolution to r²·c channels and depth_to_space(r); the last stage's c is C.
    """

    def __init__(self, output_shape: Tuple[int, int, int], hidden_sizes: Sequence[int],
                 base_shape: Tuple[int, int, int], stages: Sequence[Tuple[int, int]], **kwargs):
        super().__init__(**kwargs)
        h0, w0, c0 = base_shape
        scale = 1
        for r, _ in stages:
            scale *= r
        if (h0 * scale, w0 * scale, stages[-1][1]) != tuple(output_shape):
            raise ValueError(f"base {base_shape} upsampled by {scale} with {stages[-1][1]} channels does not give "
                             f"{tuple(output_shape)}")
        self.base_shape = tuple(base_shape)
        self.output_shape_ = tuple(output_shape)
        self.stages = tuple(stages)
        self.mlp = networks.MLP(hidden_sizes, h0 * w0 * c0, name="mlp", dtype=self.dtype_policy)
        self.convs = [keras.layers.Conv2D(r * r * c, 3, padding="same", name=f"conv_{i}", dtype=self.dtype_policy)
                      for i, (r, c) in enumerate(stages)]
        for i, layer in enumerate(self.convs):
            setattr(self, f"conv_{i}", layer)

    def call(self, codes):
        x, leading = _fold(codes, 1)  # [M, D]
        x = tf.reshape(tf.nn.elu(self.mlp(x)), [-1, *self.base_shape])  # [M, h₀, w₀, c₀]
        for i, ((r, _), layer) in enumerate(zip(self.stages, self.convs)):
            x = tf.nn.depth_to_space(layer(x), r)  # [M, h·r, w·r, c]
            if i < len(self.convs) - 1:
                x = tf.nn.elu(x)
        return tf.reshape(x, tf.concat([leading, self.output_shape_], axis=0))  # [..., H, W, C]
