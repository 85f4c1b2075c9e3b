"""Presence variables of SQAIR: masked logits, gated Bernoulli samples and the DISC count distributions.

Every object slot carries a binary presence z_pres. Two rules make presence a "once 0, stays 0" variable
(BUILD.md O2.6, O2.8, O7.2):

* DISC runs an AIR-style stop chain over its N steps: step k is gated by the presence of step k−1.
* PROP gates every propagated object by its own presence at t−1 (no chain between slots).

In both cases the presence logit is *masked* with the gate and the Bernoulli sample is multiplied by the gate.
From the masked per-step DISC logits we also get q(n), the posterior over the number of discovered objects
(BUILD.md O2.6 "number-of-steps posterior", O7.3), which is the discrete term DISC contributes to log q.

The DISC generative side contributes p(n), a Categorical over {0..N} whose logits come from a network
(BUILD.md O2.7), and the scalar ĉ_t summarising the propagation prior's expected presence, which that network and
the DISC where-prior are conditioned on.

All functions are pure, shape-polymorphic in the leading "B·K" axis (written BK) and run under
`jit_compile=True`. Distributions are built here, in plain code, never inside Keras layers.
"""
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# The original masks stopped/absent logits with −88 rather than −∞ (BUILD.md O7.2): sigmoid(−88) ≈ 6e-39, so
# presence is practically impossible, yet every Bernoulli log-prob (evaluated from the logit) stays finite:
# log q(z_pres=0) ≈ −6e-39 and even log q(z_pres=1) = −88. With −∞ the log-prob of the "impossible" value is
# −∞, and 0·(−∞) products and gradients of softplus/sigmoid at ±∞ give NaN, which leaks into the loss and
# its gradient even where the term is multiplied by a zero mask.
MASKED_LOGIT = 88.0

# Floor of the straight-through clip on q(n) (BUILD.md O2.6, O7.3).
MIN_NUM_STEPS_PROB = 1e-16


class PresenceStep(NamedTuple):
    """Result of one gated presence decision (one DISC step, or all PROP slots at once).

    Attributes:
        z_pres: float32 sample in {0, 1}, already multiplied by the gate; shape of the logit. No gradient.
        logit: the masked logit, z_pres_gate·ℓ + (z_pres_gate − 1)·88.
        prob: sigmoid(logit), the presence probability (used for summaries and q(n)).
    """
    z_pres: tf.Tensor
    logit: tf.Tensor
    prob: tf.Tensor


def mask_presence_logit(logit: tf.Tensor, z_pres_gate: tf.Tensor) -> tf.Tensor:
    """Forces the presence logit to −88 where the gate is 0 (BUILD.md O2.6 step 4, O7.2).

    ℓ' = z_pres_gate·ℓ + (z_pres_gate − 1)·88, so ℓ' = ℓ where the gate is 1 and ℓ' = −88 where it is 0.
    −88 instead of −∞ keeps every log-prob finite and every gradient NaN-free (see `MASKED_LOGIT`). The mask is
    idempotent for binary gates, so already-masked logits may be passed again.

    Args:
        logit: float presence logit ℓ, any shape S (DISC: [BK] or [BK, 1] per step; PROP: [BK, N]).
        z_pres_gate: float gate in {0, 1}, shape S (DISC: presence of the previous step, initially 1;
            PROP: the object's own z_pres_tm1).

    Returns:
        The masked logit, shape S, dtype of `logit`.
    """
    z_pres_gate = tf.cast(z_pres_gate, logit.dtype)
    return z_pres_gate * logit + (z_pres_gate - 1.0) * MASKED_LOGIT


def sample_presence(logit: tf.Tensor, z_pres_gate: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Samples z_pres ~ Bernoulli(sigmoid(masked ℓ)) × z_pres_gate (BUILD.md O2.6 step 4, O2.8 step 5).

    The sample is discrete and carries no gradient (the score-function/VIMCO term handles it, BUILD.md O4); the
    gate is a previous sample and is also treated as a constant. Multiplying by the gate makes z_pres exactly 0
    once the chain has stopped, even though sigmoid(−88) > 0.

    Args:
        logit: float presence logit, shape S; masked here with `z_pres_gate` (passing an already masked
            logit is fine).
        z_pres_gate: float gate in {0, 1}, shape S.
        seed: stateless seed, int32 tensor of shape [2]. The same seed gives the same sample within one
            execution mode, but eager and XLA samples differ (see stack notes).

    Returns:
        float32 z_pres in {0, 1}, shape S.
    """
    masked_logit = mask_presence_logit(logit, z_pres_gate)
    sample = tfd.Bernoulli(logits=masked_logit, dtype=tf.float32).sample(seed=seed)
    return tf.stop_gradient(sample * tf.cast(z_pres_gate, tf.float32))


def presence_step(logit: tf.Tensor, z_pres_gate: tf.Tensor, seed: tf.Tensor) -> PresenceStep:
    """One gated presence decision: masks the logit and samples z_pres (BUILD.md O2.6 step 4, O2.8 step 5).

    DISC calls this once per discovery step with `z_pres_gate` = z_pres of the previous step (1 at the first
    step), which builds the stop chain; PROP calls it once for all slots with `z_pres_gate` = z_pres_tm1.

    Args:
        logit: float presence logit from the presence MLP, shape S.
        z_pres_gate: float gate in {0, 1}, shape S.
        seed: stateless int32 seed of shape [2].

    Returns:
        A `PresenceStep` (z_pres, masked logit, probability), each of shape S.
    """
    masked_logit = mask_presence_logit(logit, z_pres_gate)
    z_pres = sample_presence(masked_logit, z_pres_gate, seed)
    return PresenceStep(z_pres=z_pres, logit=masked_logit, prob=tf.sigmoid(masked_logit))


def presence_log_prob(z_pres: tf.Tensor, logit: tf.Tensor) -> tf.Tensor:
    """Bernoulli log-probability of each presence value, log Bern(z_pres; sigmoid(logit)).

    Not masked here: PROP multiplies it by z_pres_tm1 (BUILD.md O2.8, O7.2); for a masked slot it is ≈ 0 anyway
    (log(1 − 6e-39)) when z_pres = 0.

    Args:
        z_pres: float presence in {0, 1}, shape S.
        logit: float (masked) presence logit, shape S.

    Returns:
        Log-probability, shape S, dtype of `logit`.
    """
    return tfd.Bernoulli(logits=logit).log_prob(tf.cast(z_pres, logit.dtype))


def num_steps_probs(step_logits: tf.Tensor) -> tf.Tensor:
    """q(n), the distribution of the number of discovered objects implied by the DISC stop chain (BUILD.md O2.6).

    With p_k = sigmoid(ℓ_k) the per-step presence probabilities of the chain (ℓ_k already masked):
        q(n=0) = 1 − p₁,  q(n=k) = (∏_{j≤k} p_j)(1 − p_{k+1}) for 0 < k < N,  q(n=N) = ∏_{j≤N} p_j,
    renormalised to sum to 1. As in the original this is evaluated in float64 and the result cast to float32.
    Unlike the original, 1 − p_k is computed as sigmoid(−ℓ_k) rather than by subtraction; the two agree to
    float64 rounding wherever the subtraction is non-zero, but the former keeps q(n) and its gradient
    non-zero when p_k rounds to 1.

    Masked logits (−88 after the chain stopped) only change q(n) for counts larger than the observed one, so
    q(observed n) is exactly the probability of the sampled chain.

    Args:
        step_logits: float masked presence logits of the N discovery steps, [BK, N].

    Returns:
        float32 probabilities of n = 0..N, [BK, N+1].
    """
    step_logits = tf.cast(step_logits, tf.float64)  # [BK, N]
    p = tf.sigmoid(step_logits)  # [BK, N]
    ones = tf.ones_like(p[:, :1])  # [BK, 1]
    # Probability that the chain reached at least n: ∏_{j≤n} p_j, with the empty product 1 for n = 0.
    reached = tf.concat([ones, tf.math.cumprod(p, axis=1)], axis=1)  # [BK, N+1]
    # Probability of stopping right after n presents: 1 − p_{n+1}, and 1 for n = N (no step N+1).
    # 1 − p_k is evaluated as sigmoid(−ℓ_k): in float64, 1 − sigmoid(ℓ) cancels to exactly 0 for ℓ ≳ 37, which
    # would leave the straight-through clip of `num_steps_log_prob` with a zero gradient.
    stops = tf.concat([tf.sigmoid(-step_logits), ones], axis=1)  # [BK, N+1]
    probs = reached * stops  # [BK, N+1]
    probs /= tf.reduce_sum(probs, axis=1, keepdims=True)
    return tf.cast(probs, tf.float32)


def _straight_through_clip(x: tf.Tensor, clip_min: float, clip_max: float) -> tf.Tensor:
    """Clips x in the forward pass and passes the gradient of the identity (BUILD.md O7.3)."""
    return x + tf.stop_gradient(tf.clip_by_value(x, clip_min, clip_max) - x)


def num_steps_log_prob(step_logits: tf.Tensor, num_steps: tf.Tensor) -> tf.Tensor:
    """log q(n) of the observed number of discovered objects (BUILD.md O2.6, O7.3).

    The probability from `num_steps_probs` is clipped straight-through to [1e-16, 1] before the log: the
    forward value never drops below log(1e-16) ≈ −36.8, and the backward pass is that of log(q) with q
    replaced by the clipped value in the denominator, i.e. (∂q/∂ℓ)/max(q, 1e-16) — finite and non-zero even
    when q underflows.

    Args:
        step_logits: float masked presence logits of the N discovery steps, [BK, N].
        num_steps: observed count n = Σ_k z_pres_k, [BK], int or float with integer values in [0, N].

    Returns:
        float32 log q(n), [BK].
    """
    probs = num_steps_probs(step_logits)  # [BK, N+1]
    num_steps = tf.cast(tf.round(tf.cast(num_steps, tf.float32)), tf.int32)  # [BK]
    prob = tf.gather(probs, num_steps[:, tf.newaxis], batch_dims=1)[:, 0]  # [BK]
    return tf.math.log(_straight_through_clip(prob, MIN_NUM_STEPS_PROB, 1.0))


def count_prior_log_prob(logits: tf.Tensor, num_steps: tf.Tensor) -> tf.Tensor:
    """log p(n) under the DISC count prior, a Categorical over n ∈ {0..N} (BUILD.md O2.7, disc_prior_type "cat").

    The logits come from the count-prior network (ELU(b + [t>0]·b_T + MLP(ĉ_t)) in the original); this
    function only builds the distribution and evaluates it.

    Args:
        logits: float Categorical logits, [BK, N+1].
        num_steps: observed count n, [BK], int or float with integer values in [0, N].

    Returns:
        log p(n), [BK], dtype of `logits`.
    """
    num_steps = tf.cast(tf.round(tf.cast(num_steps, tf.float32)), tf.int32)  # [BK]
    return tfd.Categorical(logits=logits).log_prob(num_steps)


def expected_prop_count(prior_presence_logits: tf.Tensor) -> tf.Tensor:
    """ĉ_t, the centred expected presence under the propagation prior (BUILD.md O2.7, O2.10 "t = 0").

    ĉ_t = Σ_i (sigmoid(λ_i) − 0.5) / N over the N object slots, where λ_i are the (masked) propagation-prior
    presence logits at time t. The original divides by 3, its N (BUILD.md O2.7); we divide by the number of
    slots N (the last axis), which reproduces it for N = 3 and keeps ĉ_t in [−0.5, 0.5] for any N. A slot that
    was absent at t−1 has λ = −88 and contributes −1/(2N), so ĉ_0 = −0.5 at t = 0.

    Args:
        prior_presence_logits: float propagation-prior presence logits λ, [BK, N].

    Returns:
        ĉ_t, [BK, 1].
    """
    num_slots = tf.cast(tf.shape(prior_presence_logits)[-1], prior_presence_logits.dtype)
    centred = tf.sigmoid(prior_presence_logits) - 0.5  # [BK, N]
    return tf.reduce_sum(centred, axis=-1, keepdims=True) / num_slots  # [BK, 1]
