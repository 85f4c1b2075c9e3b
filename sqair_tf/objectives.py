"""SQAIR's training objective: the IWAE bound and its VIMCO gradient estimator.

BUILD.md O4 (paper §3, "Learning" paragraph: IWAE with K = 5, VIMCO for z_pres): every sequence is explained by K
independent particles (whole trajectories, no resampling); the sequence log weight of particle k is

    L_{b,k} = Σ_t [log p(x_t, z_t | z_{<t}) − log q(z_t | x_{≤t}, z_{<t})],

and the model maximises the importance-weighted bound IWAE_b = log (1/K) Σ_k exp(L_{b,k}) (Burda et al. 2016).
Continuous latents are reparameterised, so gradients of IWAE reach them through L. The Bernoulli presence
variables are not, so their posterior parameters also get a score-function term with the VIMCO leave-one-out
control variate (Mnih & Rezende 2016). D_{b,k} is the log-probability of particle k's whole discrete trajectory
under the posterior.

Everything here is a pure function of tensors with the particle axis last:

    log_weights        L  [B, K]   (model output [T, B·K] summed over T and reshaped; particles contiguous)
    discrete_log_prob  D  [B, K]

and returns per-example values [B]. Reduction over the batch (`tf.nn.compute_average_loss` with the global
batch size) and the division by the current sequence length T (BUILD.md O5 curriculum: "the loss is divided by the
current L") are the trainer's job, not done here: T is a trainer/curriculum quantity, the division is linear, so
`vimco_surrogate_loss(...) / T` before the batch reduction is exactly the original objective.

Numerics: SQAIR's log weights are about +6000 nats per sequence and particles differ by hundreds of nats. In
float32 the spacing of representable numbers near 6000 is 4.9e-4, so any quantity that is a small difference of
two such numbers (the control variate's leave-one-out sums, the learning signal L_k − cv_k) loses most of its
digits. The control variate and the learning signal are therefore computed after subtracting the per-example
maximum over particles (a constant under stop_gradient; both quantities are shift-equivariant or
shift-invariant, so this is exact in real arithmetic), and the signal is formed entirely in the shifted frame.
The control variate is the quantity `tfp.stats.log_soomean_exp` returns, but it is computed with an exact
leave-one-out logsumexp, because TFP's formula loses up to ~0.6 nats when one particle dominates by 16 (float32)
or 36 (float64) nats; see `_shifted_control_variate`.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "iwae_bound",
    "elbo",
    "importance_weights",
    "effective_sample_size",
    "vimco_control_variate",
    "vimco_surrogate_loss",
]

_SIGNALS = ("paper", "textbook")
_REDUCTIONS = ("mean", "sum")


def _as_log_weights(log_weights, name: str = "log_weights") -> tf.Tensor:
    """Converts to a float tensor and checks the [B, K] layout."""
    log_weights = tf.convert_to_tensor(log_weights, name=name)
    if not log_weights.dtype.is_floating:
        raise ValueError(f"`{name}` must be a floating tensor, got dtype {log_weights.dtype.name}.")
    if log_weights.shape.rank is not None and log_weights.shape.rank != 2:
        raise ValueError(f"`{name}` must have shape [B, K] (batch, particles), got {log_weights.shape}.")
    return log_weights


def _num_particles(log_weights: tf.Tensor) -> tf.Tensor:
    """K as a scalar of the log weights' dtype (static when known)."""
    num_particles = log_weights.shape[-1]
    if num_particles is None:
        num_particles = tf.shape(log_weights)[-1]
    return tf.cast(num_particles, log_weights.dtype)


def _shift_by_max(log_weights: tf.Tensor):
    """Returns (L − m, m) with m = max_k L [B, 1], a constant for the gradient.

    stop_gradient: m is only a numerical reference point. The functions that use it are shift-equivariant
    (f(L − m) + m = f(L)), so treating m as a constant gives the same gradient as differentiating through it,
    without routing gradient into the arg-max particle and back out again.
    """
    max_log_weight = tf.stop_gradient(tf.reduce_max(log_weights, axis=-1, keepdims=True))  # [B, 1]
    return log_weights - max_log_weight, max_log_weight


def iwae_bound(log_weights, name: Optional[str] = None) -> tf.Tensor:
    """Importance-weighted bound IWAE_b = logsumexp_k L_{b,k} − log K (BUILD.md O4; Burda et al. 2016).

    Args:
      log_weights: [B, K] sequence log weights L.
    Returns:
      [B] per-sequence IWAE bound in nats. Differentiable: its gradient w.r.t. L_{b,k} is the normalised
      importance weight softmax_k(L_b)_k.
    """
    with tf.name_scope(name or "iwae_bound"):
        log_weights = _as_log_weights(log_weights)
        # reduce_logsumexp already subtracts the max internally.
        return tf.reduce_logsumexp(log_weights, axis=-1) - tf.math.log(_num_particles(log_weights))  # [B]


def elbo(log_weights, name: Optional[str] = None) -> tf.Tensor:
    """VAE evidence lower bound estimate mean_k L_{b,k} (BUILD.md O4, logged as "VAE"; not optimised).

    Args:
      log_weights: [B, K] sequence log weights L.
    Returns:
      [B] per-sequence average of the particles' log weights.
    """
    with tf.name_scope(name or "elbo"):
        return tf.reduce_mean(_as_log_weights(log_weights), axis=-1)  # [B]


def importance_weights(log_weights, name: Optional[str] = None) -> tf.Tensor:
    """Normalised importance weights w_{b,k} = softmax_k(L_b), used to weight logged metrics (BUILD.md O4).

    stop_gradient: the weights only average metrics for logging (importance-weighted data log-likelihood, KL,
    object counts, ...); no loss may be differentiated through them.

    Args:
      log_weights: [B, K] sequence log weights L.
    Returns:
      [B, K] non-negative weights that sum to one over K.
    """
    with tf.name_scope(name or "importance_weights"):
        return tf.stop_gradient(tf.nn.softmax(_as_log_weights(log_weights), axis=-1))  # [B, K]


def effective_sample_size(log_weights, name: Optional[str] = None) -> tf.Tensor:
    """Effective sample size ESS_b = 1 / Σ_k w_{b,k}² of the normalised importance weights (BUILD.md O4 metrics).

    Between 1 (one particle carries all the weight) and K (equal weights). No gradient (see
    `importance_weights`).

    Args:
      log_weights: [B, K] sequence log weights L.
    Returns:
      [B] effective sample size.
    """
    with tf.name_scope(name or "effective_sample_size"):
        weights = importance_weights(log_weights)  # [B, K]
        return 1.0 / tf.reduce_sum(tf.square(weights), axis=-1)  # [B]


def _check_enough_particles(log_weights: tf.Tensor) -> list:
    """VIMCO needs K ≥ 2: the baseline of particle k is built from the *other* K − 1 particles.

    With K = 1 the leave-one-out mean a_k = (Σ_{j≠k} L_j)/(K − 1) is 0/0, so instead of returning NaNs (what
    `tfp.stats.log_soomean_exp` would do) we refuse, as TFP's `csiszar_vimco` does. Returns control
    dependencies for the dynamic-K case (empty when K is static).
    """
    num_particles = log_weights.shape[-1]
    if num_particles is not None:
        if num_particles < 2:
            raise ValueError(
                "VIMCO needs at least K=2 particles per example (the control variate of particle k is built "
                f"from the other K-1 particles); got log weights of shape {log_weights.shape}. Use K >= 2, or "
                "optimise `iwae_bound` alone (which is defined for K=1 but gives no gradient to the discrete "
                "latents' score function)."
            )
        return []
    return [tf.debugging.assert_greater_equal(
        tf.shape(log_weights)[-1], 2, message="VIMCO needs at least K=2 particles per example.")]


def _shifted_control_variate(shifted_log_weights: tf.Tensor) -> tf.Tensor:
    """cv_k of log weights whose per-example max is 0; [B, K] -> [B, K].

    This is the quantity `tfp.stats.log_soomean_exp(x, axis=-1)[0]` returns ("swap-one-out" mean:
    log[(Σ_{j≠k} e^{x_j} + e^{a_k}) / K], a_k = the leave-k-out mean of x, i.e. the log of the leave-k-out
    geometric mean), and tests check the two agree on well-conditioned inputs. It is computed here with an
    explicit leave-one-out logsumexp instead, because TFP forms the leave-k-out sum as
    x_k + log(expm1(logsumexp(x) − x_k)): for the dominant particle the argument of expm1 is
    log(1 + Σ_{j≠k} e^{x_j − x_k}), rounded to the dtype's resolution, and the result is off by up to 0.54 nats
    (float32, second-best particle ~16 nats below the best) or 0.64 nats (float64, ~36 nats below), measured
    against an extended-precision reference. Such gaps are routine for SQAIR, whose particles differ by
    hundreds of nats. The masked logsumexp below is exact to rounding for every gap, at O(K²) cost (K = 5).
    """
    num_particles = tf.shape(shifted_log_weights)[-1]
    leave_out = tf.eye(num_particles, dtype=tf.bool)  # [K(k), K(j)], True where j == k
    others = tf.where(
        leave_out, tf.constant(-np.inf, shifted_log_weights.dtype), shifted_log_weights[:, tf.newaxis, :]
    )  # [B, K(k), K(j)], row k holds the other particles' log weights, -inf at j == k
    log_sum_others = tf.reduce_logsumexp(others, axis=-1)  # [B, K]: log Σ_{j≠k} e^{x_j}
    num = _num_particles(shifted_log_weights)
    # a_k: mean of the other particles' log weights, the log of their geometric mean.
    mean_others = (tf.reduce_sum(shifted_log_weights, axis=-1, keepdims=True) - shifted_log_weights) / (
        num - 1.0)  # [B, K]
    return tfp.math.log_add_exp(log_sum_others, mean_others) - tf.math.log(num)  # [B, K]


def vimco_control_variate(log_weights, name: Optional[str] = None) -> tf.Tensor:
    """VIMCO leave-one-out control variate (BUILD.md O4; Mnih & Rezende 2016, geometric-mean variant).

    For particle k, its log weight is replaced by the mean of the others' log weights,
    a_k = (Σ_{j≠k} L_j)/(K − 1), and cv_k = log[(Σ_{j≠k} e^{L_j} + e^{a_k}) / K]: the IWAE value one would get
    if particle k were replaced by a typical other particle. cv_k does not depend on particle k's sample, which
    is what keeps the score-function estimator unbiased.

    Same value as `tfp.stats.log_soomean_exp(L, axis=-1)[0]`, computed with an exact leave-one-out logsumexp
    in the max-shifted frame (see `_shifted_control_variate` for why TFP's formula is not used directly).

    Args:
      log_weights: [B, K] sequence log weights L, K ≥ 2.
    Returns:
      [B, K] control variates, in the same units as IWAE. Differentiable (the surrogate loss only uses it under
      stop_gradient).
    Raises:
      ValueError: if the static K is smaller than 2.
    """
    with tf.name_scope(name or "vimco_control_variate"):
        log_weights = _as_log_weights(log_weights)
        with tf.control_dependencies(_check_enough_particles(log_weights)):
            shifted, max_log_weight = _shift_by_max(log_weights)  # [B, K], [B, 1]
            return _shifted_control_variate(shifted) + max_log_weight  # [B, K]


def vimco_surrogate_loss(
    log_weights,
    discrete_log_prob,
    signal: str = "paper",
    score_reduction: Optional[str] = None,
    name: Optional[str] = None,
) -> tf.Tensor:
    """Per-example surrogate loss whose value is −IWAE and whose gradient is the VIMCO estimate (BUILD.md O4).

    Gradient (per example b, with w = softmax_k(L_b) and s_{b,k} the learning signal):

        ∇loss_b = −Σ_k w_{b,k} ∇L_{b,k}  −  R_k[ s_{b,k} ∇D_{b,k} ]

    The first term is the reparameterised gradient of −IWAE_b (it reaches every parameter L depends on,
    including the discrete posteriors through their log q terms inside L). The second is the score-function
    term for the non-reparameterised Bernoulli presence variables, with R_k the particle reduction.

    Learning signals (both under stop_gradient: they are REINFORCE weights, not something to optimise):
      * 'paper': s_{b,k} = L_{b,k} − cv_{b,k}, the *per-particle* log weight minus the control variate, with
        R = mean over k. This is what the original SQAIR code optimises (BUILD.md O4 and O7.5); replicate it to
        match the paper's results. Note it is not an unbiased estimate of ∇IWAE: since cv_k does not depend on
        particle k, E[s_k ∇D_k] = E[L_k ∇D_k], the score term of the ELBO rather than of the IWAE bound, and
        the mean over k scales it by 1/K.
      * 'textbook': s_{b,k} = IWAE_b − cv_{b,k} (Mnih & Rezende 2016) with R = sum over k, which is the
        unbiased VIMCO estimator of ∇IWAE (TFP's `csiszar_vimco` also sums over draws).
    `score_reduction` ('mean' | 'sum') overrides R, e.g. to compare the two signals at equal scale.

    Value: the score term Σ is added as `Σ − stop_gradient(Σ)`, which is exactly 0 in IEEE arithmetic (x − x
    = 0 for finite x) but carries Σ's gradient. So the loss value is exactly −IWAE_b, a meaningful number to
    log, rather than −IWAE_b − Σ, whose second part is an arbitrary (large, signal-weighted log-probability)
    quantity with no meaning as a loss. The gradient is the same either way.

    Not done here: division by the current sequence length T (BUILD.md O5) and the mean over the batch; the
    trainer divides the returned [B] vector by T and reduces it with `tf.nn.compute_average_loss`.

    Args:
      log_weights: [B, K] sequence log weights L (differentiable through the reparameterised latents).
      discrete_log_prob: [B, K] log q of each particle's whole discrete (presence) trajectory D, summed over
        time and objects. Same dtype as `log_weights`.
      signal: 'paper' or 'textbook', see above.
      score_reduction: None (the signal's own convention: 'paper' → 'mean', 'textbook' → 'sum'), 'mean' or
        'sum'.
      name: optional name scope.
    Returns:
      [B] per-example loss, value −IWAE_b.
    Raises:
      ValueError: on unknown `signal`/`score_reduction`, mismatched shapes, or static K < 2.
    """
    if signal not in _SIGNALS:
        raise ValueError(f"`signal` must be one of {_SIGNALS}, got {signal!r}.")
    if score_reduction is None:
        score_reduction = "mean" if signal == "paper" else "sum"
    if score_reduction not in _REDUCTIONS:
        raise ValueError(f"`score_reduction` must be None or one of {_REDUCTIONS}, got {score_reduction!r}.")
    with tf.name_scope(name or "vimco_surrogate_loss"):
        log_weights = _as_log_weights(log_weights)
        discrete_log_prob = tf.convert_to_tensor(
            discrete_log_prob, dtype=log_weights.dtype, name="discrete_log_prob")
        if not log_weights.shape.is_compatible_with(discrete_log_prob.shape):
            raise ValueError(
                "`log_weights` and `discrete_log_prob` must both be [B, K]; got "
                f"{log_weights.shape} and {discrete_log_prob.shape}.")
        with tf.control_dependencies(_check_enough_particles(log_weights)):
            iwae = iwae_bound(log_weights)  # [B]

            # The learning signal is formed entirely in the max-shifted frame, where float32 keeps its digits;
            # both signals are shift-invariant, so no shift needs to be added back.
            # stop_gradient: the signal is a REINFORCE weight (Mnih & Rezende 2016); differentiating
            # through it would add a term that is not part of the estimator.
            shifted, _ = _shift_by_max(tf.stop_gradient(log_weights))  # [B, K]
            control_variate = _shifted_control_variate(shifted)  # [B, K], shifted frame
            if signal == "paper":
                learning_signal = shifted - control_variate  # [B, K]: L_k − cv_k
            else:
                shifted_iwae = tf.reduce_logsumexp(shifted, axis=-1, keepdims=True) - tf.math.log(
                    _num_particles(shifted))  # [B, 1]
                learning_signal = shifted_iwae - control_variate  # [B, K]: IWAE − cv_k
            learning_signal = tf.stop_gradient(learning_signal)

            weighted_log_prob = learning_signal * discrete_log_prob  # [B, K]
            if score_reduction == "mean":
                score_term = tf.reduce_mean(weighted_log_prob, axis=-1)  # [B]
            else:
                score_term = tf.reduce_sum(weighted_log_prob, axis=-1)  # [B]
            # stop_gradient: `score_term − stop_gradient(score_term)` is exactly zero in value but has the
            # gradient of score_term, so the loss value stays −IWAE (see docstring).
            score_term = score_term - tf.stop_gradient(score_term)
            return -iwae - score_term  # [B]
