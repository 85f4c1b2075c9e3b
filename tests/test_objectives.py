"""Tests for sqair_tf/objectives.py against extended-precision NumPy references.

The reference uses np.longdouble (80-bit extended on x86, 64-bit mantissa; "float128" in NumPy's naming) and
derives the VIMCO surrogate's gradients analytically, as TFP's CsiszarVIMCOTest does:
  d(loss_b)/dL_{b,k} = −softmax_k(L_b),  d(loss_b)/dD_{b,k} = −s_{b,k}/K ('mean') or −s_{b,k} ('sum').
"""

import itertools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from absl.testing import parameterized

from sqair_tf import objectives

# ----------------------------------------------------------------------------------------------------------------
# Slow, loop-based extended-precision references.


def _ld(x):
    return np.asarray(x).astype(np.longdouble)


def _ref_logmeanexp(row):
    m = row.max()
    return m + np.log(np.exp(row - m).sum() / len(row))


def _ref_iwae(log_weights):
    return np.array([_ref_logmeanexp(row) for row in _ld(log_weights)])


def _ref_control_variate(log_weights):
    """cv_k = log[(Σ_{j≠k} e^{L_j} + e^{a_k}) / K], a_k the mean of the other particles, one loop per entry."""
    log_weights = _ld(log_weights)
    num_batch, num_particles = log_weights.shape
    out = np.zeros_like(log_weights)
    for b in range(num_batch):
        for k in range(num_particles):
            others = np.delete(log_weights[b], k)
            swapped_in = np.append(others, others.mean())
            out[b, k] = _ref_logmeanexp(swapped_in)
    return out


def _ref_softmax(log_weights):
    log_weights = _ld(log_weights)
    w = np.exp(log_weights - log_weights.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


def _ref_signal(log_weights, signal):
    cv = _ref_control_variate(log_weights)
    if signal == "paper":
        return _ld(log_weights) - cv
    return _ref_iwae(log_weights)[:, None] - cv


def _random_log_weights(num_batch, num_particles, offset, spread, seed):
    rng = np.random.default_rng(seed)
    return offset + spread * rng.standard_normal((num_batch, num_particles))


class ObjectivesTest(tf.test.TestCase, parameterized.TestCase):

    # Tolerances: float32 values near 6000 are spaced 4.9e-4 apart, so absolute comparisons of quantities in that
    # range are limited to about one spacing.
    def _atol(self, dtype, offset):
        if dtype == np.float64:
            return 1e-9
        return 1e-3 if offset else 2e-5

    @parameterized.product(dtype=[np.float32, np.float64], offset=[0.0, 6000.0])
    def test_iwae_and_elbo_match_reference(self, dtype, offset):
        log_weights = _random_log_weights(4, 5, offset, 300.0 if offset else 2.0, seed=1).astype(dtype)
        self.assertAllClose(objectives.iwae_bound(log_weights), _ref_iwae(log_weights).astype(np.float64),
                            atol=self._atol(dtype, offset), rtol=0)
        self.assertAllClose(objectives.elbo(log_weights), _ld(log_weights).mean(-1).astype(np.float64),
                            atol=self._atol(dtype, offset), rtol=0)

    @parameterized.product(dtype=[np.float32, np.float64], offset=[0.0, 6000.0])
    def test_control_variate_matches_reference(self, dtype, offset):
        log_weights = _random_log_weights(6, 5, offset, 300.0 if offset else 2.0, seed=2).astype(dtype)
        control_variate = objectives.vimco_control_variate(log_weights)
        self.assertEqual(control_variate.dtype, dtype)
        self.assertAllClose(control_variate, _ref_control_variate(log_weights).astype(np.float64),
                            atol=self._atol(dtype, offset), rtol=0)

    @parameterized.parameters(np.float32, np.float64)
    def test_control_variate_exact_when_one_particle_dominates(self, dtype):
        # Gaps between the best and second-best particle of 1..45 nats, at SQAIR's scale. TFP's
        # log_soomean_exp is off by up to ~0.5 nats around a gap of 16 (float32) / 36 (float64) here.
        gaps = np.arange(1.0, 45.0, 0.25)
        log_weights = np.stack([np.zeros_like(gaps), -gaps, -gaps - 3.0, -gaps - 50.0, -gaps - 1.0], axis=-1)
        log_weights = (log_weights + 6000.0).astype(dtype)
        self.assertAllClose(objectives.vimco_control_variate(log_weights),
                            _ref_control_variate(log_weights).astype(np.float64),
                            atol=self._atol(dtype, 6000.0), rtol=0)
        # The learning signals are formed in the shifted frame, so they keep full relative precision.
        for signal in ("paper", "textbook"):
            discrete_log_prob = tf.zeros_like(log_weights)
            with tf.GradientTape() as tape:
                tape.watch(discrete_log_prob)
                loss = objectives.vimco_surrogate_loss(log_weights, discrete_log_prob, signal=signal,
                                                       score_reduction="sum")
            # d loss / d D = −signal with 'sum'.
            self.assertAllClose(-tape.gradient(loss, discrete_log_prob),
                                _ref_signal(log_weights, signal).astype(np.float64),
                                atol=2e-5 if dtype == np.float32 else 1e-9, rtol=1e-5)

    def test_control_variate_is_tfp_log_soomean_exp(self):
        # Same quantity as TFP's swap-one-out mean where TFP's formula is well conditioned.
        log_weights = _random_log_weights(8, 5, 0.0, 1.0, seed=3)
        expected, _ = tfp.stats.log_soomean_exp(log_weights, axis=-1)
        self.assertAllClose(objectives.vimco_control_variate(log_weights), expected, atol=1e-12, rtol=0)

    @parameterized.product(signal=["paper", "textbook"], dtype=[np.float32, np.float64], offset=[0.0, 6000.0])
    def test_surrogate_value_and_gradients_match_reference(self, signal, dtype, offset):
        num_particles = 5
        log_weights = tf.constant(
            _random_log_weights(4, num_particles, offset, 300.0 if offset else 2.0, seed=4).astype(dtype))
        discrete_log_prob = tf.constant(_random_log_weights(4, num_particles, -7.0, 3.0, seed=5).astype(dtype))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([log_weights, discrete_log_prob])
            loss = objectives.vimco_surrogate_loss(log_weights, discrete_log_prob, signal=signal)
        self.assertEqual(loss.shape, [4])
        # The value is exactly −IWAE: the score term enters as x − stop_gradient(x) == 0.
        self.assertAllEqual(loss, -objectives.iwae_bound(log_weights))
        grad_log_weights, grad_discrete = tape.gradient(loss, [log_weights, discrete_log_prob])
        self.assertAllClose(grad_log_weights, -_ref_softmax(log_weights).astype(np.float64),
                            atol=1e-6 if dtype == np.float32 else 1e-12, rtol=0)
        scale = 1.0 / num_particles if signal == "paper" else 1.0  # 'paper' means over k, 'textbook' sums.
        expected_grad_discrete = -scale * _ref_signal(log_weights, signal)
        self.assertAllClose(grad_discrete, expected_grad_discrete.astype(np.float64),
                            atol=1e-4 if dtype == np.float32 else 1e-9, rtol=1e-5)

    def test_gradient_through_shared_parameters(self):
        # L and D both depend on θ (as in SQAIR, where log q of the presence variables is inside L):
        # dloss/dθ = Σ_{b,k} [−w_{b,k} A_{b,k,:} − s_{b,k}/K C_{b,k,:}].
        rng = np.random.default_rng(6)
        a, c = rng.standard_normal((2, 3, 4, 2))  # [B, K, P]
        theta = tf.Variable(rng.standard_normal(2))
        offsets = rng.standard_normal((3, 4)) * 5.0
        with tf.GradientTape() as tape:
            log_weights = tf.einsum("bkp,p->bk", a, theta) + offsets
            discrete_log_prob = tf.einsum("bkp,p->bk", c, theta)
            loss = tf.reduce_sum(objectives.vimco_surrogate_loss(log_weights, discrete_log_prob))
        weights = _ref_softmax(log_weights)
        learning_signal = _ref_signal(log_weights, "paper")
        expected = -(np.einsum("bk,bkp->p", weights, _ld(a)) + np.einsum("bk,bkp->p", learning_signal, _ld(c)) / 4)
        self.assertAllClose(tape.gradient(loss, theta), expected.astype(np.float64), atol=1e-10, rtol=0)

    def test_score_reduction_override_scales_by_num_particles(self):
        log_weights = tf.constant(_random_log_weights(2, 4, 0.0, 2.0, seed=7))
        discrete_log_prob = tf.constant(_random_log_weights(2, 4, -3.0, 1.0, seed=8))
        grads = {}
        for reduction in ("mean", "sum"):
            with tf.GradientTape() as tape:
                tape.watch(discrete_log_prob)
                loss = objectives.vimco_surrogate_loss(log_weights, discrete_log_prob, signal="paper",
                                                       score_reduction=reduction)
            grads[reduction] = tape.gradient(loss, discrete_log_prob)
        self.assertAllClose(grads["sum"], 4.0 * grads["mean"], atol=1e-12, rtol=0)

    @parameterized.parameters(("textbook", True), ("paper", False))
    def test_expected_gradient_by_enumeration(self, signal, is_unbiased):
        """Exact expectation over all 2^K discrete samples of a one-parameter Bernoulli model.

        q(z = 1) = σ(φ), log p(x, z) = c_z, L_k = c_{z_k} − log q(z_k), D_k = log q(z_k). The textbook VIMCO
        estimator is unbiased for ∇_φ E[IWAE]; the paper's per-particle signal is not (it estimates a mix of
        the IWAE and ELBO gradients). Any error in the control variate's leave-one-out structure (a cv_k that
        depended on z_k) would also make the textbook estimator biased.
        """
        num_particles = 3
        log_joint = tf.constant([-1.0, 0.7], tf.float64)  # c_0, c_1
        logit = tf.Variable(0.3, dtype=tf.float64)
        true_grad = tf.constant(0.0, tf.float64)
        expected_estimate = tf.constant(0.0, tf.float64)
        for config in itertools.product([0, 1], repeat=num_particles):
            z = tf.constant([config], tf.float64)  # [B=1, K]
            with tf.GradientTape(persistent=True) as tape:
                log_q = -tf.nn.softplus(tf.where(z > 0, -logit, logit))  # [1, K] log q(z_k)
                log_weights = tf.gather(log_joint, tf.constant([config])) - log_q
                prob_config = tf.exp(tf.reduce_sum(log_q))
                exact_term = prob_config * objectives.iwae_bound(log_weights)[0]
                surrogate = -objectives.vimco_surrogate_loss(log_weights, log_q, signal=signal)[0]
            true_grad += tape.gradient(exact_term, logit)
            expected_estimate += tf.stop_gradient(prob_config) * tape.gradient(surrogate, logit)
        if is_unbiased:
            self.assertAllClose(expected_estimate, true_grad, atol=1e-12, rtol=0)
        else:
            self.assertGreater(abs(float(expected_estimate - true_grad)), 1e-3)

    def test_num_particles_one(self):
        log_weights = tf.constant([[3.0], [-2.0]])
        # IWAE and ELBO are defined for K = 1 (both equal the single log weight) ...
        self.assertAllClose(objectives.iwae_bound(log_weights), [3.0, -2.0])
        self.assertAllClose(objectives.elbo(log_weights), [3.0, -2.0])
        self.assertAllClose(objectives.effective_sample_size(log_weights), [1.0, 1.0])
        # ... VIMCO is not: its baseline is built from the other K − 1 particles.
        with self.assertRaisesRegex(ValueError, "at least K=2"):
            objectives.vimco_control_variate(log_weights)
        with self.assertRaisesRegex(ValueError, "at least K=2"):
            objectives.vimco_surrogate_loss(log_weights, tf.zeros_like(log_weights))

    def test_dynamic_num_particles_checked_at_run_time(self):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)] * 2)
        def loss_fn(log_weights, discrete_log_prob):
            return objectives.vimco_surrogate_loss(log_weights, discrete_log_prob)

        log_weights = tf.constant([[1.0, 2.0, 0.5]])
        self.assertAllClose(loss_fn(log_weights, tf.zeros_like(log_weights)), -objectives.iwae_bound(log_weights))
        with self.assertRaises(tf.errors.InvalidArgumentError):
            loss_fn(tf.constant([[1.0]]), tf.constant([[0.0]]))

    def test_jit_compile_matches_eager(self):
        log_weights = tf.constant(_random_log_weights(4, 5, 6000.0, 300.0, seed=9).astype(np.float32))
        discrete_log_prob = tf.constant(_random_log_weights(4, 5, -7.0, 3.0, seed=10).astype(np.float32))

        def value_and_grads(log_weights, discrete_log_prob):
            with tf.GradientTape() as tape:
                tape.watch([log_weights, discrete_log_prob])
                loss = objectives.vimco_surrogate_loss(log_weights, discrete_log_prob, signal="textbook")
            return loss, tape.gradient(loss, [log_weights, discrete_log_prob])

        eager = value_and_grads(log_weights, discrete_log_prob)
        jitted = tf.function(value_and_grads, jit_compile=True)(log_weights, discrete_log_prob)
        self.assertAllClose(jitted, eager, atol=2e-3, rtol=1e-6)

    def test_effective_sample_size(self):
        num_particles = 5
        equal = tf.fill([2, num_particles], 6000.0)
        self.assertAllClose(objectives.effective_sample_size(equal), [5.0, 5.0], atol=1e-5)
        dominant = tf.constant([[6000.0, 5700.0, 5650.0, 5800.0, 5600.0]])
        self.assertAllClose(objectives.effective_sample_size(dominant), [1.0], atol=1e-6)
        log_weights = _random_log_weights(3, num_particles, 0.0, 1.0, seed=11)
        expected = 1.0 / (_ref_softmax(log_weights) ** 2).sum(-1)
        self.assertAllClose(objectives.effective_sample_size(log_weights), expected.astype(np.float64),
                            atol=1e-12, rtol=0)

    def test_importance_weights_normalised_and_without_gradient(self):
        log_weights = tf.constant(_random_log_weights(3, 5, 6000.0, 300.0, seed=12).astype(np.float32))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(log_weights)
            weights = objectives.importance_weights(log_weights)
            ess = objectives.effective_sample_size(log_weights)
        self.assertAllClose(tf.reduce_sum(weights, axis=-1), tf.ones([3]), atol=1e-6)
        self.assertAllClose(weights, _ref_softmax(log_weights).astype(np.float64), atol=1e-6, rtol=0)
        self.assertIsNone(tape.gradient(weights, log_weights))
        self.assertIsNone(tape.gradient(ess, log_weights))

    def test_invalid_arguments(self):
        log_weights = tf.zeros([2, 3])
        with self.assertRaisesRegex(ValueError, "signal"):
            objectives.vimco_surrogate_loss(log_weights, log_weights, signal="reinforce")
        with self.assertRaisesRegex(ValueError, "score_reduction"):
            objectives.vimco_surrogate_loss(log_weights, log_weights, score_reduction="max")
        with self.assertRaisesRegex(ValueError, r"\[B, K\]"):
            objectives.vimco_surrogate_loss(log_weights, tf.zeros([2, 4]))
        with self.assertRaisesRegex(ValueError, r"\[B, K\]"):
            objectives.iwae_bound(tf.zeros([2, 3, 4]))


if __name__ == "__main__":
    tf.test.main()
