"""Generic building blocks of MLP-SQAIR with the original's (Sonnet 1) initialisation (BUILD.md O2.2).

* `MLP`: affine layers with ELU after every hidden layer; an optional linear (or `output_activation`) output
  layer. Sonnet `Linear` initialisation: weights from a normal with σ = 1/√fan_in truncated at ±2σ, biases 0.
* `VanillaRNNCell`: h' = tanh(W_in x + b_in + W_hh h + b_hh), two affine layers with two biases (Sonnet
  `VanillaRNN`).
* `GRUCell`: Sonnet's GRU, reset gate applied *before* the recurrent matmul, all 9 variables (3 input
  weights, 3 recurrent weights, 3 biases) Glorot-uniform, biases included.
* `TrainableInitialState`: a zero-initialised trainable vector tiled over the batch (Sonnet
  `initial_state(trainable=True)`).

Cells follow one contract: `call(inputs, state) -> (output, new_state)` on a flat batch axis (`BK` in the
model) and `initial_state(batch_size)`. The trainable initial state is *not* part of a cell by default,
because in SQAIR several initial states live away from their cell (e.g. the temporal GRU's initial state is
owned by the sequence level and shared by all newly discovered objects, BUILD.md O2.8–O2.12). Pass
`use_trainable_initial_state=True` to let a cell own one.
"""
from typing import Callable, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

# Keras's truncated-normal VarianceScaling divides σ by this constant (the std of a unit normal truncated at
# ±2) so that the *truncated* distribution has the requested std. Sonnet instead uses σ = 1/√fan_in for the
# *untruncated* normal, so the scale is pre-multiplied by the constant squared to cancel the correction.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def sonnet_linear_initializer(seed: Optional[int] = None) -> keras.initializers.Initializer:
    """Sonnet `Linear` weight init: truncated normal (±2σ) with σ = 1/√fan_in of the untruncated normal.

    Equivalent to `TruncatedNormal(stddev=1/sqrt(fan_in))` but with fan_in taken from the variable's shape,
    so it can be given to a layer whose input size is only known at build time.
    """
    return keras.initializers.VarianceScaling(
        scale=_TRUNCATED_NORMAL_STD**2, mode="fan_in", distribution="truncated_normal", seed=seed
    )


def _constant_initializer(value):
    """An initializer from a float, an array broadcastable to the variable's shape, or an initializer."""
    if isinstance(value, str) or callable(value):
        return value
    if np.ndim(value) == 0:
        return keras.initializers.Constant(float(value))
    value = np.asarray(value)

    def initializer(shape, dtype=None):
        return tf.broadcast_to(tf.constant(value, dtype=dtype), shape)

    return initializer


def check_positive_int(value, name: str) -> int:
    """Validates a constructor size argument; shared by every layer module."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def linear(
    units: int, bias_initializer="zeros", name: Optional[str] = None, dtype=None
) -> keras.layers.Dense:
    """A Sonnet-initialised affine layer (weights: `sonnet_linear_initializer`, bias: zeros by default).

    Keras 3 does not propagate a parent's dtype policy to sublayers, so composite layers pass theirs.
    """
    return keras.layers.Dense(
        check_positive_int(units, "units"),
        kernel_initializer=sonnet_linear_initializer(),
        bias_initializer=_constant_initializer(bias_initializer),
        name=name,
        dtype=dtype,
    )


class MLP(keras.layers.Layer):
    """Multi-layer perceptron with ELU hidden layers (the original's `neural.MLP`, BUILD.md O2.2).

    Args:
      hidden_sizes: widths of the hidden layers, each followed by ELU.
      output_size: width of the final affine layer; None means no output layer, so the MLP ends with the
        ELU of its last hidden layer.
      output_bias_init: initial value of the output bias (float, array or initializer); used for the
        presence logits (BUILD.md O2.6/O2.8) and the glimpse-mask bias (BUILD.md O2.5).
      output_activation: optional activation of the output layer (linear by default).

    Call: `inputs` [..., D_in] -> [..., output_size or hidden_sizes[-1]].
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        output_size: Optional[int] = None,
        output_bias_init=0.0,
        output_activation: Optional[Union[str, Callable]] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_sizes = tuple(hidden_sizes)
        for i, size in enumerate(hidden_sizes):
            check_positive_int(size, f"hidden_sizes[{i}]")
        if output_size is None and not hidden_sizes:
            raise ValueError("An MLP needs at least one hidden layer or an output_size.")
        if output_size is not None:
            check_positive_int(output_size, "output_size")
        if output_size is None and output_activation is not None:
            raise ValueError("output_activation needs an output_size.")
        self.hidden_sizes = hidden_sizes
        self.output_size = output_size
        self.hidden_layers = [
            linear(size, name=f"hidden_{i}", dtype=self.dtype_policy)
            for i, size in enumerate(hidden_sizes)
        ]
        # Keras 3 tracks layers in a list for `weights`, but TF's object graph (tf.train.Checkpoint, SavedModel)
        # does not see list elements: name each layer as an attribute too, or a checkpoint restored through
        # the model alone silently leaves the hidden layers at their initial values.
        for i, layer in enumerate(self.hidden_layers):
            setattr(self, f"hidden_{i}", layer)
        self.output_layer = None
        self.output_activation = None
        if output_size is not None:
            self.output_layer = linear(
                output_size, bias_initializer=output_bias_init, name="output", dtype=self.dtype_policy
            )
            self.output_activation = keras.activations.get(output_activation)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = inputs
        for layer in self.hidden_layers:
            x = tf.nn.elu(layer(x))
        if self.output_layer is not None:
            x = self.output_activation(self.output_layer(x))
        return x


class TrainableInitialState(keras.layers.Layer):
    """A trainable vector, zero-initialised, tiled over the batch (Sonnet `initial_state(trainable=True)`).

    `initial_state(batch_size)` (int or scalar int tensor) -> [batch_size, size]. Keras only accepts tensors
    as positional `__call__` arguments, so a Python int goes through `initial_state` (or
    `layer(batch_size=...)`); a scalar tensor may also be passed positionally.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = check_positive_int(size, "size")
        self.state = self.add_weight(shape=(size,), initializer="zeros", name="state")
        self.built = True

    def initial_state(self, batch_size) -> tf.Tensor:
        return tf.tile(self.state[None, :], tf.stack([batch_size, 1]))  # [batch_size, size]

    def call(self, batch_size) -> tf.Tensor:
        return self.initial_state(batch_size)


class _RNNCell(keras.layers.Layer):
    """Shared `initial_state` for the cells: zeros, or an owned trainable vector."""

    def __init__(self, units: int, use_trainable_initial_state: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.initial_state_layer = (
            # Its weight is created at construction, outside this layer's name scope: prefix the name so
            # that the variable path stays unique and says which cell it belongs to.
            TrainableInitialState(units, name=f"{self.name}_initial_state", dtype=self.dtype_policy)
            if use_trainable_initial_state
            else None
        )

    @property
    def state_size(self) -> int:
        return self.units

    def initial_state(self, batch_size) -> tf.Tensor:
        """[batch_size, units] initial state."""
        if self.initial_state_layer is not None:
            return self.initial_state_layer.initial_state(batch_size)
        return tf.zeros(tf.stack([batch_size, self.units]), dtype=self.compute_dtype)


class VanillaRNNCell(_RNNCell):
    """Sonnet's VanillaRNN: h' = tanh(W_in x + b_in + W_hh h + b_hh) (BUILD.md O2.2).

    Used as DISC's RNN and PROP's relation RNN (BUILD.md O2.6, O2.8). Output and new state are both h'.

    Call: `inputs` [BK, D_in], `state` [BK, units] -> (output [BK, units], new_state [BK, units]).
    """

    def __init__(self, units: int, use_trainable_initial_state: bool = False, **kwargs):
        super().__init__(units, use_trainable_initial_state, **kwargs)
        self.input_to_hidden = linear(units, name="in_to_hidden", dtype=self.dtype_policy)
        self.hidden_to_hidden = linear(units, name="hidden_to_hidden", dtype=self.dtype_policy)

    def call(self, inputs: tf.Tensor, state: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        new_state = tf.tanh(self.input_to_hidden(inputs) + self.hidden_to_hidden(state))  # [BK, units]
        return new_state, new_state


class GRUCell(_RNNCell):
    """Sonnet's GRU (BUILD.md O2.2), reset applied before the recurrent matmul:

        z = σ(W_z x + U_z h + b_z),   r = σ(W_r x + U_r h + b_r),
        h̃ = tanh(W_h x + U_h (r ⊙ h) + b_h),   h' = (1 − z) ⊙ h + z ⊙ h̃.

    All 9 variables are Glorot-uniform, the biases included (the original creates them with
    `tf.get_variable` and no initializer; for a 1-D bias fan_in = fan_out = units). Parameter count
    3·(D_in·units + units² + units). Output and new state are both h'.

    Call: `inputs` [BK, D_in], `state` [BK, units] -> (output [BK, units], new_state [BK, units]).
    """

    def build(self, inputs_shape, state_shape):
        input_size = inputs_shape[-1]
        if input_size is None:
            raise ValueError(f"GRUCell needs a static input size, got inputs of shape {inputs_shape}.")
        u = self.units

        def weight(name, shape):
            return self.add_weight(shape=shape, initializer="glorot_uniform", name=name)

        self.w_z, self.w_r, self.w_h = (weight(f"w_{g}", (input_size, u)) for g in "zrh")
        self.u_z, self.u_r, self.u_h = (weight(f"u_{g}", (u, u)) for g in "zrh")
        self.b_z, self.b_r, self.b_h = (weight(f"b_{g}", (u,)) for g in "zrh")

    def call(self, inputs: tf.Tensor, state: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        u = self.units
        # One matmul for the three input projections and one for the two recurrent gate projections.
        x_proj = tf.matmul(inputs, tf.concat([self.w_z, self.w_r, self.w_h], axis=1))  # [BK, 3u]
        h_proj = tf.matmul(state, tf.concat([self.u_z, self.u_r], axis=1))  # [BK, 2u]
        update = tf.sigmoid(x_proj[:, :u] + h_proj[:, :u] + self.b_z)  # [BK, u]
        reset = tf.sigmoid(x_proj[:, u : 2 * u] + h_proj[:, u:] + self.b_r)  # [BK, u]
        candidate = tf.tanh(x_proj[:, 2 * u :] + tf.matmul(reset * state, self.u_h) + self.b_h)  # [BK, u]
        new_state = (1.0 - update) * state + update * candidate  # [BK, u]
        return new_state, new_state
