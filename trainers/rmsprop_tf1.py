"""RMSProp with TensorFlow 1 `tf.train.RMSPropOptimizer` semantics, as a Keras 3 optimizer (BUILD.md O5).

The original SQAIR trains with TF1 `RMSPropOptimizer(learning_rate, momentum=0.9)` and TF1 defaults
(decay ρ = 0.9, ε = 1e-10, not centred). Per variable θ with gradient g:

    ms  ← ms + (1 − ρ)(g² − ms)               (= ρ·ms + (1 − ρ)·g²)
    mom ← μ·mom + lr·g / √(ms + ε)
    θ   ← θ − mom

with the mean-square slot `ms` initialised to **one** and `mom` to zero. `keras.optimizers.RMSprop` differs:
it initialises ms to zero, its default ε is 1e-7 and momentum is off by default. The initial value matters for
SQAIR: with a steady gradient g, TF1's ms after t steps is ρ^t + (1 − ρ^t)·g², so for the first
t ≲ ln(g²)/ln ρ steps (about 130 steps for |g| ~ 1e-3, ρ = 0.9) an update is ≈ lr·g/√(ρ^t), far smaller than
Keras' zero-initialised ≈ lr·sign(g)/√(1 − ρ^t) (3.2·lr on the very first step). BUILD.md O5 and O7.13.

This is a regular Keras 3 optimizer: it works in `tf.function`, under `jit_compile=True`, with
`tf.distribute.MirroredStrategy` (the TF-backend base class all-reduces the gradients by summation and applies
the update per replica), with Keras' `clipnorm`/`clipvalue`/`global_clipnorm` keywords (the paper uses none),
and its slots are tracked by `tf.train.Checkpoint(optimizer=...)`.

The learning rate is evaluated at `optimizer.iterations`, the number of updates applied before the current one,
which is TF1's `global_step` as read by `minimize`. `paper_learning_rate_schedule` gives the paper's schedule.
"""

from typing import Sequence, Union

import keras
import tensorflow as tf

__all__ = ["RMSPropTF1", "paper_learning_rate_schedule"]

# Paper schedule (BUILD.md O5): `--schedule 4,6,10` over `train_itr = 2,000,000` → boundaries at 400k and 1M.
PAPER_BASE_LEARNING_RATE = 1e-5
PAPER_BOUNDARIES = (400_000, 1_000_000)
PAPER_DECAY_FACTORS = (1.0, 1.0 / 3.0, 1.0 / 9.0)


def paper_learning_rate_schedule(
    base_learning_rate: float = PAPER_BASE_LEARNING_RATE,
    boundaries: Sequence[int] = PAPER_BOUNDARIES,
    decay_factors: Sequence[float] = PAPER_DECAY_FACTORS,
) -> keras.optimizers.schedules.PiecewiseConstantDecay:
    """Piecewise-constant learning rate of the paper: 1e-5, then 1e-5/3 after step 400k, 1e-5/9 after 1M.

    Semantics are those of TF1 `tf.train.piecewise_constant` and Keras `PiecewiseConstantDecay`: the rate is
    values[i] while step ≤ boundaries[i], so step 400,000 still uses 1e-5 and step 400,001 is the first at
    1e-5/3.

    Args:
      base_learning_rate: rate before the first boundary.
      boundaries: increasing optimizer steps at which the rate drops.
      decay_factors: multipliers of `base_learning_rate`, one more than `boundaries`.
    Returns:
      A `keras.optimizers.schedules.PiecewiseConstantDecay`, to pass as `RMSPropTF1(learning_rate=...)`.
    Raises:
      ValueError: if the lengths do not match or the boundaries are not strictly increasing.
    """
    boundaries = [int(b) for b in boundaries]
    if len(decay_factors) != len(boundaries) + 1:
        raise ValueError(
            f"Need one more decay factor than boundaries; got {len(decay_factors)} factors for "
            f"{len(boundaries)} boundaries.")
    if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])) or any(b < 0 for b in boundaries):
        raise ValueError(f"Boundaries must be non-negative and strictly increasing, got {boundaries}.")
    values = [float(base_learning_rate) * float(f) for f in decay_factors]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries=boundaries, values=values)


class RMSPropTF1(keras.optimizers.Optimizer):
    """RMSProp with momentum exactly as TF1 `tf.train.RMSPropOptimizer` (non-centred), ms slot starting at 1.

    Args:
      learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule` (see
        `paper_learning_rate_schedule`). Defaults to the paper's 1e-5.
      rho: decay of the mean-square slot (TF1 `decay`), in [0, 1). Default 0.9.
      momentum: momentum μ, in [0, 1). Default 0.9 (the paper's setting; TF1's own default is 0).
      epsilon: added to ms inside the square root (TF1 semantics, not outside as in Adam). Default 1e-10.
      name: optimizer name.
      **kwargs: the Keras base-optimizer keywords (`clipnorm`, `global_clipnorm`, `use_ema`, ...).

    Slots, one pair per trainable variable, created in `build`: `ms` (initialised to ones) and `momentum`
    (zeros). Sparse gradients (`tf.IndexedSlices`) are densified: TF1's sparse kernel would update only the
    touched rows' slots, which SQAIR (no embedding lookups) never needs. Keras keeps the learning rate in a float32
    variable, so float64 model variables are updated with the float32-rounded rate (relative difference ≤ 3e-8).
    """

    def __init__(
        self,
        learning_rate: Union[float, keras.optimizers.schedules.LearningRateSchedule] = PAPER_BASE_LEARNING_RATE,
        rho: float = 0.9,
        momentum: float = 0.9,
        epsilon: float = 1e-10,
        name: str = "rmsprop_tf1",
        **kwargs,
    ):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"`rho` must be in [0, 1), got {rho}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
        if epsilon < 0.0:
            raise ValueError(f"`epsilon` must be non-negative, got {epsilon}.")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, var_list):
        """Creates the `ms` (ones) and `momentum` (zeros) slots for every variable in `var_list`."""
        if self.built:
            return
        super().build(var_list)
        # TF1 initialises the mean-square slot to ones (`init_ones` in RMSPropOptimizer._create_slots), which
        # damps the first updates; Keras' RMSprop starts it at zero.
        self._mean_squares = self.add_optimizer_variables(var_list, "ms", initializer="ones")
        self._momentums = self.add_optimizer_variables(var_list, "momentum", initializer="zeros")

    def update_step(self, gradient, variable, learning_rate):
        """One TF1 `ApplyRMSProp` update of `variable` (any shape) with `gradient` of the same shape."""
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        mean_square = self._mean_squares[index]
        momentum = self._momentums[index]

        # Written as the TF1 kernel does (ms += (g² − ms)(1 − ρ)) so rounding matches it as closely as possible.
        new_mean_square = mean_square + (tf.square(gradient) - mean_square) * (1.0 - self.rho)
        new_momentum = self.momentum * momentum + lr * gradient / tf.sqrt(new_mean_square + self.epsilon)
        self.assign(mean_square, new_mean_square)
        self.assign(momentum, new_momentum)
        self.assign_sub(variable, new_momentum)

    def get_slot(self, variable, name: str):
        """The optimizer variable `name` ('ms' or 'momentum') that belongs to the model `variable`.

        Same role as TF1's `Optimizer.get_slot`, for tests and debugging; the optimizer must be built.
        """
        slots = {"ms": self._mean_squares, "momentum": self._momentums}
        if name not in slots:
            raise ValueError(f"Unknown slot {name!r}; RMSPropTF1 has slots {sorted(slots)}.")
        return slots[name][self._get_variable_index(variable)]

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon})
        return config
