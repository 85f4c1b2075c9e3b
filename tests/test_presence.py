"""Tests for sqair_tf/presence.py: masked presence logits, gated sampling and the DISC count distributions."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from sqair_tf import presence

_SEED = tf.constant([7, 11], tf.int32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _num_steps_probs_reference(step_logits):
    """Slow float64 NumPy q(n) from the stop-chain formula of BUILD.md O2.6, one row at a time."""
    step_logits = np.asarray(step_logits, np.float64)
    num_rows, num_steps = step_logits.shape
    probs = np.zeros([num_rows, num_steps + 1])
    for row in range(num_rows):
        p = _sigmoid(step_logits[row])
        for n in range(num_steps + 1):
            value = np.prod(p[:n])
            if n < num_steps:
                value *= 1.0 - p[n]
            probs[row, n] = value
        probs[row] /= probs[row].sum()
    return probs


def _sample_chain(step_logits, seed):
    """Runs the DISC stop chain over the columns of `step_logits` [BK, N] with `presence_step`.

    Returns the samples and the masked logits, both [BK, N]. The gate of step 1 is 1 (BUILD.md O2.6: the initial
    DISC state has z_pres = 1); the gate of step k is the sample of step k − 1.
    """
    num_steps = step_logits.shape[1]
    gate = tf.ones_like(step_logits[:, 0])
    z_pres, masked_logits = [], []
    for k in range(num_steps):
        step = presence.presence_step(step_logits[:, k], gate,
                                      tf.random.experimental.stateless_fold_in(seed, k))
        z_pres.append(step.z_pres)
        masked_logits.append(step.logit)
        gate = step.z_pres
    return tf.stack(z_pres, axis=1), tf.stack(masked_logits, axis=1)


def _tiled_logits(logits, num_rows):
    return tf.tile(tf.constant([logits], tf.float32), [num_rows, 1])  # [BK, N]


class MaskingAndSamplingTest(tf.test.TestCase):

    def test_mask_presence_logit_values(self):
        logit = tf.constant([3.0, -2.0, 50.0, 0.5])
        gate = tf.constant([1.0, 1.0, 0.0, 0.0])
        masked = presence.mask_presence_logit(logit, gate)
        self.assertAllClose(masked, [3.0, -2.0, -88.0, -88.0])
        # Idempotent for binary gates, so callers may pass already masked logits to sample_presence.
        self.assertAllClose(presence.mask_presence_logit(masked, gate), masked)

    def test_masked_logits_give_absent_and_zero_log_prob(self):
        num_rows = 5000
        logit = tf.fill([num_rows], 50.0)  # presence would be certain without the mask
        gate = tf.zeros([num_rows])
        z_pres = presence.sample_presence(logit, gate, _SEED)
        self.assertAllEqual(z_pres, np.zeros(num_rows))
        masked = presence.mask_presence_logit(logit, gate)
        with tf.GradientTape() as tape:
            tape.watch(masked)
            log_prob_absent = presence.presence_log_prob(z_pres, masked)
            log_prob_present = presence.presence_log_prob(tf.ones_like(z_pres), masked)
            total = tf.reduce_sum(log_prob_absent + log_prob_present)
        self.assertAllClose(log_prob_absent, np.zeros(num_rows), atol=1e-30)
        # −88 rather than −∞: even the impossible value has a finite log-prob and a finite gradient.
        self.assertAllClose(log_prob_present, np.full(num_rows, -88.0))
        self.assertTrue(np.all(np.isfinite(tape.gradient(total, masked).numpy())))

    def test_sample_presence_matches_probability_and_gate(self):
        num_rows = 20000
        logit = tf.fill([2, num_rows], 0.3)
        gate = tf.constant([[1.0], [0.0]]) * tf.ones([2, num_rows])
        z_pres = presence.sample_presence(logit, gate, _SEED).numpy()
        self.assertEqual(z_pres.dtype, np.float32)
        self.assertTrue(set(np.unique(z_pres)) <= {0.0, 1.0})
        self.assertAllEqual(z_pres[1], np.zeros(num_rows))
        # Standard error of the mean is sqrt(p(1 − p)/n) ≈ 0.0035; allow 5 standard errors.
        self.assertNear(z_pres[0].mean(), _sigmoid(0.3), 0.0175)

    def test_sample_presence_has_no_gradient(self):
        logit = tf.constant([0.1, 2.0, -1.0])
        with tf.GradientTape() as tape:
            tape.watch(logit)
            z_pres = presence.sample_presence(logit, tf.ones([3]), _SEED)
        self.assertIsNone(tape.gradient(z_pres, logit))

    def test_presence_log_prob_against_numpy(self):
        rng = np.random.RandomState(0)
        logit = rng.normal(scale=3.0, size=[64, 3]).astype(np.float32)
        z_pres = rng.randint(0, 2, size=[64, 3]).astype(np.float32)
        p = _sigmoid(logit)
        expected = z_pres * np.log(p) + (1.0 - z_pres) * np.log1p(-p)
        self.assertAllClose(presence.presence_log_prob(z_pres, tf.constant(logit)), expected, rtol=1e-5,
                            atol=1e-6)

    def test_chain_once_absent_stays_absent(self):
        num_rows = 20000
        # p ≈ 0.88 per step: absent steps are rare but frequent enough (~2.4k rows stop at step 1) that an
        # ungated sampler would show ~2k 0→1 transitions.
        z_pres, masked_logits = _sample_chain(_tiled_logits([2.0, 2.0, 2.0], num_rows), _SEED)
        z_pres = z_pres.numpy()
        self.assertGreater(np.sum(z_pres[:, 0] == 0), 1000)
        self.assertGreater(np.sum(z_pres[:, 1] == 0), 1000)
        self.assertAllEqual(np.sum(z_pres[:, 1:] > z_pres[:, :-1]), 0)
        # Steps after the stop are masked to −88.
        stopped = np.concatenate([np.zeros([num_rows, 1]), z_pres[:, :-1] == 0], axis=1).astype(bool)
        self.assertAllEqual(masked_logits.numpy()[stopped], np.full(stopped.sum(), -88.0))
        self.assertAllEqual(masked_logits.numpy()[~stopped], np.full((~stopped).sum(), 2.0))

    def test_sampling_under_xla(self):
        num_rows = 20000

        @tf.function(jit_compile=True)
        def sample(step_logits, seed):
            z_pres, masked_logits = _sample_chain(step_logits, seed)
            num_steps = tf.reduce_sum(z_pres, axis=1)
            return z_pres, presence.num_steps_log_prob(masked_logits, num_steps), masked_logits

        step_logits = _tiled_logits([2.0, 0.0, -1.0], num_rows)
        z_pres, log_q, masked_logits = sample(step_logits, _SEED)
        z_pres = z_pres.numpy()
        self.assertTrue(set(np.unique(z_pres)) <= {0.0, 1.0})
        self.assertAllEqual(np.sum(z_pres[:, 1:] > z_pres[:, :-1]), 0)
        self.assertNear(z_pres[:, 0].mean(), _sigmoid(2.0), 5 * np.sqrt(0.12 * 0.88 / num_rows))
        eager_log_q = presence.num_steps_log_prob(masked_logits, tf.reduce_sum(z_pres, axis=1))
        self.assertAllClose(log_q, eager_log_q, rtol=1e-6)


class NumStepsTest(parameterized.TestCase, tf.test.TestCase):

    def test_hand_built_half_probabilities(self):
        probs = presence.num_steps_probs(tf.zeros([2, 3]))  # p = [0.5, 0.5, 0.5]
        self.assertAllClose(probs, [[0.5, 0.25, 0.125, 0.125]] * 2)

    def test_hand_built_mixed_probabilities(self):
        p = np.array([0.8, 0.5, 0.25])
        logits = np.log(p) - np.log1p(-p)
        probs = presence.num_steps_probs(tf.constant([logits], tf.float32))
        # q = [1 − 0.8, 0.8·0.5, 0.8·0.5·0.75, 0.8·0.5·0.25]
        self.assertAllClose(probs, [[0.2, 0.4, 0.3, 0.1]], rtol=1e-6)

    @parameterized.parameters(1, 3, 5)
    def test_probs_against_numpy_reference(self, num_steps):
        rng = np.random.RandomState(num_steps)
        step_logits = rng.normal(scale=3.0, size=[50, num_steps]).astype(np.float32)
        step_logits[:5, 1:] = -88.0  # stopped chains, as DISC produces them
        probs = presence.num_steps_probs(tf.constant(step_logits))
        self.assertEqual(probs.dtype, tf.float32)
        self.assertEqual(probs.shape, [50, num_steps + 1])
        self.assertAllClose(probs, _num_steps_probs_reference(step_logits), rtol=1e-6, atol=1e-12)
        self.assertAllClose(tf.reduce_sum(probs, axis=1), np.ones(50), atol=1e-6)

    @parameterized.parameters(1, 3, 5)
    def test_log_prob_against_numpy_reference(self, num_steps):
        rng = np.random.RandomState(10 + num_steps)
        step_logits = rng.normal(scale=3.0, size=[50, num_steps]).astype(np.float32)
        observed = rng.randint(0, num_steps + 1, size=[50])
        reference = _num_steps_probs_reference(step_logits)[np.arange(50), observed]
        expected = np.log(np.clip(reference, 1e-16, 1.0))
        self.assertAllClose(presence.num_steps_log_prob(tf.constant(step_logits), observed), expected,
                            rtol=1e-5, atol=1e-6)
        # Float counts (Σ z_pres) are accepted as well.
        self.assertAllClose(presence.num_steps_log_prob(tf.constant(step_logits), observed.astype(np.float32)),
                            expected, rtol=1e-5, atol=1e-6)

    def test_log_prob_gradient_unclipped(self):
        logits = tf.constant([[1.0, -0.5, 2.0], [1.0, -0.5, 2.0]])
        with tf.GradientTape() as tape:
            tape.watch(logits)
            log_q = presence.num_steps_log_prob(logits, tf.constant([0, 3]))
        grad = tape.gradient(log_q, logits).numpy()
        p = _sigmoid([1.0, -0.5, 2.0])
        # d log(1 − σ(ℓ₁))/dℓ = −σ(ℓ₁); d log ∏σ(ℓ_j)/dℓ_j = 1 − σ(ℓ_j).
        self.assertAllClose(grad[0], [-p[0], 0.0, 0.0], atol=1e-6)
        self.assertAllClose(grad[1], 1.0 - p, atol=1e-6)

    def test_straight_through_clip(self):
        # q(n=0) = 1 − σ(40) ≈ 4.2e-18 < 1e-16: representable in float64, below the floor.
        logits = tf.constant([[40.0, 0.0, 0.0]])
        with tf.GradientTape() as tape:
            tape.watch(logits)
            log_q = presence.num_steps_log_prob(logits, tf.constant([0]))
        self.assertAllClose(log_q, [np.log(1e-16)], rtol=1e-6)
        grad = tape.gradient(log_q, logits).numpy()
        # Straight-through: gradient of log evaluated at the clipped value, (∂q/∂ℓ₁)/1e-16.
        expected = -_sigmoid(40.0) * _sigmoid(-40.0) / 1e-16
        self.assertTrue(np.all(np.isfinite(grad)))
        self.assertNotEqual(grad[0, 0], 0.0)
        self.assertAllClose(grad[0, 0], expected, rtol=1e-4)
        self.assertAllClose(grad[0, 1:], [0.0, 0.0], atol=1e-9)

    def test_straight_through_clip_on_a_product(self):
        # q(n=1) = σ(−40)·(1 − σ(0)) ≈ 2.1e-18 < 1e-16.
        logits = tf.constant([[-40.0, 0.0, 0.0]])
        with tf.GradientTape() as tape:
            tape.watch(logits)
            log_q = presence.num_steps_log_prob(logits, tf.constant([1]))
        self.assertAllClose(log_q, [np.log(1e-16)], rtol=1e-6)
        grad = tape.gradient(log_q, logits).numpy()
        p_1 = _sigmoid(-40.0)
        # ∂q/∂ℓ₁ = p₁(1 − p₁)·0.5 and ∂q/∂ℓ₂ = −p₁·0.25, both divided by the clipped value 1e-16.
        self.assertAllClose(grad[0], [p_1 * (1 - p_1) * 0.5 / 1e-16, -p_1 * 0.25 / 1e-16, 0.0], rtol=1e-4,
                            atol=1e-9)

    def test_empirical_count_distribution_matches_num_steps_probs(self):
        num_rows = 20000
        logits = [1.0, 0.0, -0.5]
        z_pres, masked_logits = _sample_chain(_tiled_logits(logits, num_rows), _SEED)
        num_steps = tf.reduce_sum(z_pres, axis=1)
        expected = presence.num_steps_probs(_tiled_logits(logits, 1))[0].numpy().astype(np.float64)
        observed = np.bincount(num_steps.numpy().astype(np.int64), minlength=4)

        def chi_square(probs):
            return np.sum((observed - num_rows * probs) ** 2 / (num_rows * probs))

        # 4 categories → 3 degrees of freedom; 16.27 is the 0.999 quantile, so a correct sampler fails this
        # for at most 0.1% of seeds (and the seed is fixed).
        self.assertLess(chi_square(expected), 16.27)
        # Power check: the count of three *independent* Bernoullis (no stop chain) is rejected by far.
        p = _sigmoid(logits)
        independent = np.array([
            (1 - p[0]) * (1 - p[1]) * (1 - p[2]),
            p[0] * (1 - p[1]) * (1 - p[2]) + (1 - p[0]) * p[1] * (1 - p[2]) + (1 - p[0]) * (1 - p[1]) * p[2],
            p[0] * p[1] * (1 - p[2]) + p[0] * (1 - p[1]) * p[2] + (1 - p[0]) * p[1] * p[2],
            p[0] * p[1] * p[2]])
        self.assertGreater(chi_square(independent), 1000.0)
        # With the masked logits of each sampled chain, log q(n) is the log-probability of that chain.
        self.assertAllClose(presence.num_steps_log_prob(masked_logits, num_steps),
                            np.log(expected[num_steps.numpy().astype(np.int64)]), rtol=1e-5)


class CountPriorTest(tf.test.TestCase):

    def test_count_prior_log_prob_against_numpy(self):
        rng = np.random.RandomState(3)
        logits = rng.normal(size=[32, 4]).astype(np.float32)
        observed = rng.randint(0, 4, size=[32])
        log_softmax = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
        expected = log_softmax[np.arange(32), observed]
        self.assertAllClose(presence.count_prior_log_prob(tf.constant(logits), observed), expected, rtol=1e-5)
        self.assertAllClose(presence.count_prior_log_prob(tf.constant(logits), observed.astype(np.float32)),
                            expected, rtol=1e-5)

    def test_expected_prop_count_hand_built(self):
        # All slots absent at t − 1 (masked to −88): each contributes −1/6, so ĉ_0 = −0.5 (BUILD.md O2.10).
        self.assertAllClose(presence.expected_prop_count(tf.fill([2, 3], -88.0)), [[-0.5], [-0.5]])
        # σ(0) − 0.5 = 0, σ(88) − 0.5 = 0.5, σ(−88) − 0.5 = −0.5 → 0.
        self.assertAllClose(presence.expected_prop_count(tf.constant([[0.0, 88.0, -88.0]])), [[0.0]])
        # Two certain objects out of three: (0.5 + 0.5 − 0.5)/3.
        self.assertAllClose(presence.expected_prop_count(tf.constant([[88.0, 88.0, -88.0]])), [[1.0 / 6.0]])

    def test_expected_prop_count_divides_by_num_slots(self):
        rng = np.random.RandomState(4)
        logits = rng.normal(scale=2.0, size=[16, 4]).astype(np.float32)
        expected = np.sum(_sigmoid(logits) - 0.5, axis=1, keepdims=True) / 4.0
        self.assertAllClose(presence.expected_prop_count(tf.constant(logits)), expected, rtol=1e-5, atol=1e-7)


if __name__ == "__main__":
    tf.test.main()
