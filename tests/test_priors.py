"""Tests for sqair_tf/priors.py: propagation prior, DISC where/count priors, latent summary, log-probs."""
import keras
import numpy as np
import tensorflow as tf

from sqair_tf import priors

_SEED = tf.constant([3, 5], tf.int32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _normal_log_pdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2.0 * np.pi)


def _bernoulli_log_pmf(z, logit):
    return z * -np.logaddexp(0.0, -logit) + (1.0 - z) * -np.logaddexp(0.0, logit)


def _np_dense(layer, x):
    return x @ layer.kernel.numpy() + layer.bias.numpy()


def _np_mlp(mlp, x):
    for layer in mlp.hidden_layers:
        x = _elu(_np_dense(layer, x))
    if mlp.output_layer is not None:
        x = _np_dense(mlp.output_layer, x)
    return x


def _np_gru(cell, x, h):
    """Sonnet GRU from the BUILD.md O2.2 equations (reset before the recurrent matmul)."""
    w = {name: getattr(cell, name).numpy() for name in ("w_z", "w_r", "w_h", "u_z", "u_r", "u_h",
                                                          "b_z", "b_r", "b_h")}
    z = _sigmoid(x @ w["w_z"] + h @ w["u_z"] + w["b_z"])
    r = _sigmoid(x @ w["w_r"] + h @ w["u_r"] + w["b_r"])
    h_tilde = np.tanh(x @ w["w_h"] + (r * h) @ w["u_h"] + w["b_h"])
    return (1.0 - z) * h + z * h_tilde


def _gru_params(d_in, units):
    return 3 * (d_in * units + units * units + units)


def _dense_params(d_in, d_out):
    return d_in * d_out + d_out


class PropagationPriorTest(tf.test.TestCase):

    def _inputs(self, rng, bk, n, d, u, z_pres_tm1):
        return (rng.normal(size=(bk, n, d)), rng.normal(size=(bk, n, 4)), np.asarray(z_pres_tm1, np.float64),
                rng.normal(size=(bk, n, u)))

    def test_matches_numpy_reference(self):
        bk, n, d, u = 2, 3, 3, 5
        layer = priors.PropagationPrior(z_what_dim=d, hidden_size=u, dtype="float64")
        rng = np.random.default_rng(0)
        what, where, pres_tm1, state_tm1 = self._inputs(rng, bk, n, d, u, [[1, 0, 1], [0, 1, 1]])
        out = layer(tf.constant(what), tf.constant(where), tf.constant(pres_tm1), tf.constant(state_tm1))
        self.assertEqual(set(out), {"presence_logit", "where_loc", "where_scale", "what_loc", "what_scale",
                                    "prior_state"})
        # Slot by slot: the slots are independent GRUs with shared weights.
        for b in range(bk):
            for i in range(n):
                x = np.concatenate([what[b, i], where[b, i]])[None]
                h = _np_gru(layer.cell, x, state_tm1[b, i][None])[0]
                stats = _np_dense(layer.readout, h)
                logit = stats[0] + 10.0 if pres_tm1[b, i] else -88.0
                self.assertAllClose(out["presence_logit"][b, i], logit, atol=1e-12, rtol=0)
                self.assertAllClose(out["where_loc"][b, i], stats[1:5], atol=1e-12, rtol=0)
                self.assertAllClose(out["what_loc"][b, i], stats[5:5 + d], atol=1e-12, rtol=0)
                self.assertAllClose(out["where_scale"][b, i], _softplus(stats[5 + d:9 + d]) + 0.01,
                                    atol=1e-12, rtol=0)
                self.assertAllClose(out["what_scale"][b, i], _softplus(stats[9 + d:]) + 0.01,
                                    atol=1e-12, rtol=0)
                # The new state is carried for every slot, absent ones included.
                self.assertAllClose(out["prior_state"][b, i], h, atol=1e-12, rtol=0)

    def test_presence_logit_bias_is_constant_and_absent_objects_are_masked(self):
        layer = priors.PropagationPrior(z_what_dim=2, hidden_size=3)
        inputs = (tf.ones((2, 3, 2)), tf.ones((2, 3, 4)), tf.constant([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
                  layer.initial_state(2, 3))
        layer(*inputs)
        # Hand-built readout: zero weights and bias, so λ before the constant is exactly 0.
        layer.readout.kernel.assign(tf.zeros_like(layer.readout.kernel))
        layer.readout.bias.assign(tf.zeros_like(layer.readout.bias))
        out = layer(*inputs)
        self.assertAllEqual(out["presence_logit"], [[10.0, -88.0, 10.0], [-88.0, -88.0, 10.0]])
        self.assertAllClose(out["where_scale"], np.full((2, 3, 4), np.log(2.0) + 0.01))
        # The +10 is not a variable: only the GRU, the readout and the initial state are trainable.
        self.assertLen(layer.trainable_weights, 9 + 2 + 1)
        self.assertEmpty(layer.non_trainable_weights)
        shifted = priors.PropagationPrior(z_what_dim=2, hidden_size=3, presence_logit_bias=-1.0)
        shifted(*inputs)
        shifted.readout.kernel.assign(tf.zeros_like(shifted.readout.kernel))
        shifted.readout.bias.assign(tf.zeros_like(shifted.readout.bias))
        self.assertAllEqual(shifted(*inputs)["presence_logit"], [[-1.0, -88.0, -1.0], [-88.0, -88.0, -1.0]])

    def test_paper_parameter_counts(self):
        layer = priors.PropagationPrior()  # D = 50, U = 256
        out = layer(tf.zeros((2, 3, 50)), tf.zeros((2, 3, 4)), tf.ones((2, 3)), layer.initial_state(2, 3))
        self.assertEqual(out["what_loc"].shape, (2, 3, 50))
        self.assertEqual(out["where_scale"].shape, (2, 3, 4))
        self.assertEqual(out["presence_logit"].shape, (2, 3))
        self.assertEqual(out["prior_state"].shape, (2, 3, 256))
        # BUILD.md O2.12 PROP: prior GRU (input 54, 256 units) + prior Linear 256 → 109.
        self.assertEqual(layer.cell.count_params(), _gru_params(54, 256))
        self.assertEqual(layer.cell.count_params(), 238_848)
        self.assertEqual(layer.readout.count_params(), 28_013)
        # The trainable initial prior state (256) is counted in the "sequence" block of BUILD.md O2.12.
        self.assertEqual(layer.initial_state_layer.count_params(), 256)
        self.assertEqual(layer.count_params(), 238_848 + 28_013 + 256)

    def test_initial_state_is_trainable_zero_vector(self):
        layer = priors.PropagationPrior(z_what_dim=2, hidden_size=3)
        self.assertAllEqual(layer.initial_state(4), np.zeros((4, 3)))
        self.assertAllEqual(layer.initial_state(tf.constant(2), 5).shape, (2, 5, 3))
        with tf.GradientTape() as tape:
            state = layer.initial_state(2, 3)
            out = layer(tf.ones((2, 3, 2)), tf.ones((2, 3, 4)), tf.ones((2, 3)), state)
            loss = tf.reduce_sum(out["what_loc"])
        grad = tape.gradient(loss, layer.initial_state_layer.trainable_weights[0])
        self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0)


class PropagationPriorLogProbTest(tf.test.TestCase):

    def _prior_outputs(self, rng, bk, n, d, z_pres_tm1):
        logit = rng.normal(size=(bk, n)) * 3.0
        return dict(
            presence_logit=tf.constant(np.where(z_pres_tm1 > 0, logit, -88.0)),
            where_loc=tf.constant(rng.normal(size=(bk, n, 4))),
            where_scale=tf.constant(rng.uniform(0.1, 2.0, size=(bk, n, 4))),
            what_loc=tf.constant(rng.normal(size=(bk, n, d))),
            what_scale=tf.constant(rng.uniform(0.1, 2.0, size=(bk, n, d))),
            prior_state=tf.zeros((bk, n, 2), tf.float64),
        )

    def test_matches_numpy_reference(self):
        bk, n, d = 4, 3, 5
        rng = np.random.default_rng(1)
        z_pres_tm1 = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [1, 1, 0]], np.float64)
        z_pres = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0]], np.float64)
        outs = self._prior_outputs(rng, bk, n, d, z_pres_tm1)
        what, where = rng.normal(size=(bk, n, d)), rng.normal(size=(bk, n, 4))
        args = (outs, tf.constant(what), tf.constant(where), tf.constant(z_pres), tf.constant(z_pres_tm1))
        parts = priors.propagation_prior_log_prob_parts(*args)
        got = priors.propagation_prior_log_prob(*args)
        self.assertEqual(got.shape, (bk,))
        expected_continuous, expected_discrete = np.zeros(bk), np.zeros(bk)
        for b in range(bk):
            for i in range(n):
                if not z_pres_tm1[b, i]:
                    continue
                expected_discrete[b] += _bernoulli_log_pmf(z_pres[b, i], outs["presence_logit"].numpy()[b, i])
                if z_pres[b, i]:
                    expected_continuous[b] += _normal_log_pdf(what[b, i], outs["what_loc"].numpy()[b, i],
                                                              outs["what_scale"].numpy()[b, i]).sum()
                    expected_continuous[b] += _normal_log_pdf(where[b, i], outs["where_loc"].numpy()[b, i],
                                                              outs["where_scale"].numpy()[b, i]).sum()
        self.assertAllClose(parts.continuous, expected_continuous, atol=1e-10, rtol=0)
        self.assertAllClose(parts.discrete, expected_discrete, atol=1e-10, rtol=0)
        self.assertAllClose(got, expected_continuous + expected_discrete, atol=1e-10, rtol=0)
        self.assertEqual(float(got[2]), 0.0)  # nothing was present at t−1

    def test_absent_objects_contribute_exactly_zero(self):
        bk, n, d = 3, 3, 4
        rng = np.random.default_rng(2)
        z_pres_tm1 = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.float64)
        z_pres = z_pres_tm1.copy()
        outs = self._prior_outputs(rng, bk, n, d, z_pres_tm1)
        what, where = rng.normal(size=(bk, n, d)), rng.normal(size=(bk, n, 4))
        base = priors.propagation_prior_log_prob(outs, what, where, z_pres, z_pres_tm1)
        absent = (z_pres_tm1 == 0)
        # Perturb the latents, the prior statistics and even the presence of the slots absent at t−1.
        what2, where2, z_pres2 = what.copy(), where.copy(), z_pres.copy()
        what2[absent] += 100.0 * rng.normal(size=(absent.sum(), d))
        where2[absent] -= 50.0
        z_pres2[absent] = 1.0
        outs2 = dict(outs)
        for key in ("what_loc", "where_loc", "what_scale", "where_scale"):
            value = outs[key].numpy().copy()
            value[absent] *= 3.0
            outs2[key] = tf.constant(value)
        perturbed = priors.propagation_prior_log_prob(outs2, what2, where2, z_pres2, z_pres_tm1)
        self.assertAllEqual(perturbed, base)
        # Present slots do matter (the test can fail).
        what2[~absent] += 1.0
        self.assertNotAllClose(priors.propagation_prior_log_prob(outs2, what2, where2, z_pres2, z_pres_tm1),
                               base)
        nothing = priors.propagation_prior_log_prob(outs2, what2, where2, z_pres2, np.zeros((bk, n)))
        self.assertAllEqual(nothing, np.zeros(bk))


class DiscoveryWherePriorTest(tf.test.TestCase):

    def _np_stats(self, layer, z_where, c, c_hat):
        """Slow NumPy reference of BUILD.md O2.7, slot by slot (the RNN always sees s₀; its state is dropped)."""
        r0 = layer.initial_state_layer.state.numpy()
        cell = layer.cell
        locs, scales = [], []
        for b in range(c.shape[0]):
            s0 = _elu(_np_dense(layer.conditioning_layer, np.concatenate([r0, c[b], c_hat[b]])))
            w_prev = layer.initial_sample.numpy()[0]
            for k in range(z_where.shape[1]):
                o = np.tanh(_np_dense(cell.input_to_hidden, w_prev) + _np_dense(cell.hidden_to_hidden, s0))
                stats = _np_dense(layer.readout, o)
                locs.append(stats[:4])
                scales.append(_softplus(stats[4:]) + 0.01)
                w_prev = z_where[b, k]
        shape = z_where.shape
        return np.reshape(locs, shape), np.reshape(scales, shape)

    def _randomise(self, layer, rng):
        for v in layer.weights:
            v.assign(rng.normal(size=v.shape) * 0.7)

    def test_paper_parameter_count_and_initialisation(self):
        layer = priors.DiscoveryWherePrior()
        z_where, loc, scale = layer.sample(tf.zeros((2, 256)), tf.zeros((2, 1)), _SEED)
        self.assertEqual(z_where.shape, (2, 3, 4))
        self.assertEqual(loc.shape, (2, 3, 4))
        self.assertEqual(scale.shape, (2, 3, 4))
        # BUILD.md O2.12: Linear 261→128, VanillaRNN(4) in 4→4 and hh 128→4, readout 4→8, init state 4,
        # init sample 4. Cross-check: the DISC block's 1,403,398 minus all its other listed parts (image
        # encoder 706,048, glimpse encoder 194,148, mask 84,496, where MLP 133,641, presence MLP 39,425,
        # RNN 211,200, initial state 256, count MLP 64) leaves exactly 34,120.
        self.assertEqual(layer.conditioning_layer.count_params(), _dense_params(261, 128))
        self.assertEqual(layer.cell.count_params(), _dense_params(4, 4) + _dense_params(128, 4))
        self.assertEqual(layer.readout.count_params(), _dense_params(4, 8))
        self.assertEqual(layer.initial_state_layer.count_params(), 4)
        self.assertEqual(layer.count_params(), 33_536 + 20 + 516 + 40 + 4 + 4)
        self.assertEqual(layer.count_params(),
                         1_403_398 - 706_048 - 194_148 - 84_496 - 133_641 - 39_425 - 211_200 - 256 - 64)
        self.assertAllEqual(layer.readout.bias, [-2.0, -2.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
        self.assertAllEqual(layer.initial_state_layer.state, np.zeros(4))
        # Glorot-uniform (1, 4): limit √(6 / (1 + 4)).
        self.assertLessEqual(float(tf.reduce_max(tf.abs(layer.initial_sample))), np.sqrt(6.0 / 5.0))
        self.assertGreater(float(tf.reduce_max(tf.abs(layer.initial_sample))), 0.0)

    def test_hand_built_initial_statistics(self):
        layer = priors.DiscoveryWherePrior(num_steps=2, hidden_size=3, scale_prior=-2.5, std_bias=0.5)
        layer.sample(tf.zeros((1, 2)), tf.zeros((1, 1)), _SEED)  # build
        layer.readout.kernel.assign(tf.zeros_like(layer.readout.kernel))
        _, loc, scale = layer.sample(tf.ones((3, 2)), tf.ones((3, 1)), _SEED)
        self.assertAllClose(loc, np.tile([-2.5, -2.5, 0.0, 0.0], (3, 2, 1)))
        self.assertAllClose(scale, np.full((3, 2, 4), np.log1p(np.exp(0.5)) + 0.01))
        default = priors.DiscoveryWherePrior(num_steps=1, hidden_size=3)
        default.sample(tf.zeros((1, 2)), tf.zeros((1, 1)), _SEED)
        default.readout.kernel.assign(tf.zeros_like(default.readout.kernel))
        _, loc, scale = default.sample(tf.ones((1, 2)), tf.ones((1, 1)), _SEED)
        self.assertAllClose(loc[0, 0], [-2.0, -2.0, 0.0, 0.0])
        self.assertAllClose(scale[0, 0], np.full(4, 1.3233), atol=1e-4)  # BUILD.md O2.7: initial std ≈ 1.32

    def test_teacher_forced_stats_match_numpy_reference(self):
        bk, nd, c_size = 3, 4, 6
        layer = priors.DiscoveryWherePrior(num_steps=nd, hidden_size=5, dtype="float64")
        rng = np.random.default_rng(3)
        z_where = rng.normal(size=(bk, nd, 4))
        c, c_hat = rng.normal(size=(bk, c_size)), rng.normal(size=(bk, 1))
        layer.log_prob_of(tf.constant(z_where), tf.constant(c), tf.constant(c_hat))  # build
        self._randomise(layer, rng)  # non-zero initial state and biases, so that every term is exercised
        _, loc, scale = layer(tf.constant(c), tf.constant(c_hat), z_where=tf.constant(z_where))
        np_loc, np_scale = self._np_stats(layer, z_where, c, c_hat)
        self.assertAllClose(loc, np_loc, atol=1e-12, rtol=0)
        self.assertAllClose(scale, np_scale, atol=1e-12, rtol=0)
        log_prob = layer.log_prob_of(tf.constant(z_where), tf.constant(c), tf.constant(c_hat))
        self.assertEqual(log_prob.shape, (bk, nd))
        self.assertAllClose(log_prob, _normal_log_pdf(z_where, np_loc, np_scale).sum(-1), atol=1e-10, rtol=0)

    def test_log_prob_of_equals_step_by_step_sampling(self):
        bk, nd = 5, 3
        layer = priors.DiscoveryWherePrior(num_steps=nd, hidden_size=8, dtype="float64")
        rng = np.random.default_rng(4)
        c, c_hat = tf.constant(rng.normal(size=(bk, 7))), tf.constant(rng.normal(size=(bk, 1)))
        layer.sample(c, c_hat, _SEED)
        self._randomise(layer, rng)
        z_where, loc, scale = layer.sample(c, c_hat, _SEED)
        # Statistics produced autoregressively by sampling = teacher-forced statistics of those samples.
        _, tf_loc, tf_scale = layer(c, c_hat, z_where=z_where)
        self.assertAllClose(tf_loc, loc, atol=1e-12, rtol=0)
        self.assertAllClose(tf_scale, scale, atol=1e-12, rtol=0)
        step_by_step = _normal_log_pdf(z_where.numpy(), loc.numpy(), scale.numpy()).sum(-1)
        self.assertAllClose(layer.log_prob_of(z_where, c, c_hat), step_by_step, atol=1e-10, rtol=0)
        # The slots really are autoregressive: changing slot 1 changes slot 2's statistics, not slot 1's.
        moved = z_where.numpy().copy()
        moved[:, 0] += 1.0
        _, moved_loc, _ = layer(c, c_hat, z_where=tf.constant(moved))
        self.assertAllClose(moved_loc[:, :1], loc[:, :1], atol=1e-12, rtol=0)
        self.assertNotAllClose(moved_loc[:, 1], loc[:, 1])

    def test_sample_is_seeded_and_reparameterised(self):
        layer = priors.DiscoveryWherePrior(num_steps=3, hidden_size=4)
        c, c_hat = tf.random.stateless_normal((6, 5), _SEED), tf.fill((6, 1), -0.5)
        first = layer.sample(c, c_hat, _SEED)[0]
        self.assertAllEqual(layer.sample(c, c_hat, _SEED)[0], first)
        self.assertNotAllClose(layer.sample(c, c_hat, tf.constant([3, 6], tf.int32))[0], first)
        with tf.GradientTape() as tape:
            tape.watch(c)
            z_where, _, _ = layer.sample(c, c_hat, _SEED)
            total = tf.reduce_sum(z_where[:, 2])
        grads = tape.gradient([total], [c] + layer.trainable_weights)
        self.assertGreater(float(tf.reduce_max(tf.abs(grads[0]))), 0.0)
        for grad, var in zip(grads[1:], layer.trainable_weights):
            self.assertIsNotNone(grad, var.path)
        jitted = tf.function(layer.sample, jit_compile=True)
        z_jit, loc_jit, _ = jitted(c, c_hat, _SEED)
        self.assertEqual(z_jit.shape, (6, 3, 4))
        # The first slot's statistics do not depend on samples, so they agree across execution modes.
        self.assertAllClose(loc_jit[:, 0], layer.sample(c, c_hat, _SEED)[1][:, 0], atol=1e-5)

    def test_gradients_through_a_jitted_while_loop(self):
        # The time loop of the model: XLA needs compile-time shapes in the loop's gradient (stack notes).
        where_prior = priors.DiscoveryWherePrior(num_steps=3, hidden_size=4)
        prop_prior = priors.PropagationPrior(z_what_dim=2, hidden_size=3)
        c, c_hat = tf.random.stateless_normal((6, 5), _SEED), tf.fill((6, 1), 0.1)
        z_where = tf.random.stateless_normal((2, 6, 3, 4), _SEED)
        z_what = tf.random.stateless_normal((6, 3, 2), _SEED)
        where_prior.log_prob_of(z_where[0], c, c_hat)
        prop_prior(z_what, z_where[0], tf.ones((6, 3)), prop_prior.initial_state(6, 3))
        variables = where_prior.trainable_weights + prop_prior.trainable_weights

        @tf.function(jit_compile=True)
        def gradients():
            with tf.GradientTape() as tape:
                def body(t, total, state):
                    out = prop_prior(z_what, z_where[t], tf.ones((6, 3)), state)
                    total += tf.reduce_sum(where_prior.log_prob_of(z_where[t], c, c_hat))
                    total += tf.reduce_sum(out["what_loc"])
                    # New objects restart from the trainable initial state (tiled inside the loop).
                    state = 0.5 * (out["prior_state"] + prop_prior.initial_state(6, 3))
                    return t + 1, total, state

                _, total, _ = tf.while_loop(lambda t, *_: t < 2, body, (0, 0.0, tf.zeros((6, 3, 3))),
                                            maximum_iterations=2)
            return tape.gradient(total, variables)

        for grad, var in zip(gradients(), variables):
            self.assertIsNotNone(grad, var.path)
            self.assertTrue(np.all(np.isfinite(grad.numpy())), var.path)

    def test_needs_exactly_one_of_z_where_and_seed(self):
        layer = priors.DiscoveryWherePrior(num_steps=2, hidden_size=3)
        with self.assertRaises(ValueError):
            layer(tf.zeros((1, 2)), tf.zeros((1, 1)))
        with self.assertRaises(ValueError):
            layer(tf.zeros((1, 2)), tf.zeros((1, 1)), z_where=tf.zeros((1, 2, 4)), seed=_SEED)


class CountPriorTest(tf.test.TestCase):

    def test_paper_parameter_count(self):
        layer = priors.CountPrior()  # N = 3
        self.assertEqual(layer(tf.zeros((2, 1)), t=0).shape, (2, 4))
        self.assertEqual(layer.mlp.count_params(), _dense_params(1, 10) + _dense_params(10, 4))  # 64, in DISC
        self.assertEqual(layer.count_params(), 64 + 8)  # b, b_T: BUILD.md O2.12's separate 4 + 4
        self.assertAllEqual(layer.bias, np.zeros(4))
        self.assertAllEqual(layer.later_step_bias, [10.0, 0.0, 0.0, 0.0])

    def test_initial_logits_match_numpy_and_spec_probabilities(self):
        keras.utils.set_random_seed(0)
        layer = priors.CountPrior()
        c_hat = np.array([[-0.5], [-1.0 / 6.0], [1.0 / 6.0], [0.5]], np.float32)  # ĉ ∈ [−0.5, 0.5]
        first = layer(tf.constant(c_hat), tf.constant(0)).numpy()
        later = layer(tf.constant(c_hat), tf.constant(1)).numpy()
        mlp_out = _np_mlp(layer.mlp, c_hat.astype(np.float64))
        self.assertAllClose(first, _elu(mlp_out), atol=1e-6)
        self.assertAllClose(later, _elu(mlp_out + [10.0, 0.0, 0.0, 0.0]), atol=1e-5)
        self.assertGreaterEqual(float(first.min()), -1.0)  # the ELU bounds every logit below by −1
        probs_first = tf.nn.softmax(first).numpy()
        probs_later = tf.nn.softmax(later).numpy()
        # t = 0: close to uniform over {0..3} (the bound holds for this seed; the NumPy check above is the
        # exact one); t > 0: P(n = 0) ≈ 0.9999 (BUILD.md O2.7).
        self.assertAllClose(probs_first, np.full((4, 4), 0.25), atol=0.15)
        self.assertAllGreater(probs_later[:, 0], 0.999)

    def test_time_index_forms_and_gradients(self):
        layer = priors.CountPrior(num_slots=2, hidden_size=3, later_step_zero_bias=4.0)
        c_hat = tf.constant([[0.2]])
        first = layer(c_hat, t=0)
        later = layer(c_hat, t=1)
        pre_activation = layer.bias + layer.mlp(c_hat)  # [1, 3]
        self.assertAllClose(first, tf.nn.elu(pre_activation))
        self.assertAllClose(later, tf.nn.elu(pre_activation + [4.0, 0.0, 0.0]))
        self.assertAllClose(layer(c_hat, t=7), later)
        # Traced with a tensor time index, as in the time loop; the bool [t > 0] is accepted too.
        traced = tf.function(lambda t: layer(c_hat, t))
        self.assertAllClose(traced(tf.constant(0)), first)
        self.assertAllClose(traced(tf.constant(3)), later)
        self.assertAllClose(layer(c_hat, tf.constant(0) > 0), first)
        self.assertAllClose(layer(c_hat, tf.constant(2) > 0), later)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(c_hat, t=2)[:, 1])
        grad_b, grad_bt = tape.gradient(loss, [layer.bias, layer.later_step_bias])
        self.assertAllClose(grad_b, grad_bt)  # both biases enter additively at t > 0
        self.assertGreater(float(grad_b[1]), 0.0)


class LatentSummaryTest(tf.test.TestCase):

    def test_paper_parameter_count(self):
        layer = priors.LatentSummary()
        c = layer(tf.zeros((2, 3, 50)), tf.zeros((2, 3, 4)), tf.ones((2, 3)))
        self.assertEqual(c.shape, (2, 256))
        # BUILD.md O2.12 "sequence" block 80,384 = this MLP + the initial temporal and prior states (2 × 256).
        self.assertEqual(layer.count_params(), _dense_params(54, 256) + _dense_params(256, 256))
        self.assertEqual(layer.count_params(), 80_384 - 512)

    def test_matches_numpy_and_ignores_absent_objects(self):
        bk, n, d = 3, 4, 5
        layer = priors.LatentSummary(hidden_size=6, dtype="float64")
        rng = np.random.default_rng(5)
        what, where = rng.normal(size=(bk, n, d)), rng.normal(size=(bk, n, 4))
        z_pres = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], np.float64)
        c = layer(what, where, z_pres)
        codes = _np_mlp(layer.mlp, np.concatenate([what, where], axis=-1))  # ends with ELU
        self.assertAllClose(c, (z_pres[..., None] * codes).sum(1), atol=1e-12, rtol=0)
        self.assertAllEqual(c[1], np.zeros(6))
        absent = z_pres == 0
        what[absent] += 10.0
        where[absent] *= -3.0
        self.assertAllEqual(layer(what, where, z_pres), c)


class DiscoveryPriorLogProbTest(tf.test.TestCase):

    def test_matches_numpy_and_masks_absent_slots(self):
        bk, nd, d = 4, 3, 5
        rng = np.random.default_rng(6)
        what = rng.normal(size=(bk, nd, d))
        where_lp = rng.normal(size=(bk, nd)) - 3.0
        z_pres = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], np.float64)
        num_steps = z_pres.sum(-1)
        count_logits = rng.normal(size=(bk, nd + 1))
        got = priors.discovery_prior_log_prob(what, where_lp, z_pres, count_logits, num_steps)
        self.assertEqual(got.shape, (bk,))
        log_softmax = count_logits - np.log(np.exp(count_logits).sum(-1, keepdims=True))
        what_lp = _normal_log_pdf(what, 0.0, 1.0).sum(-1)  # [BK, Nd]
        expected_continuous = np.array([(z_pres[b] * (what_lp[b] + where_lp[b])).sum() for b in range(bk)])
        expected_discrete = np.array([log_softmax[b, int(num_steps[b])] for b in range(bk)])
        self.assertAllClose(got, expected_continuous + expected_discrete, atol=1e-10, rtol=0)
        # The parts, with n defaulting to Σ_k z_pres_k.
        parts = priors.discovery_prior_log_prob_parts(what, where_lp, z_pres, count_logits)
        self.assertAllClose(parts.continuous, expected_continuous, atol=1e-10, rtol=0)
        self.assertAllClose(parts.discrete, expected_discrete, atol=1e-10, rtol=0)
        absent = z_pres == 0
        what[absent] += 7.0
        where_lp[absent] -= 100.0
        self.assertAllEqual(priors.discovery_prior_log_prob(what, where_lp, z_pres, count_logits,
                                                            num_steps.astype(np.int32)), got)

    def test_count_penalty_costs_lambda_nats_per_discovered_object_and_leaves_the_prior_alone(self):
        # λ lowers only the discrete part, by exactly λ·n (n = 0, 1, 2, 3 here), and its gradient with respect to
        # the count logits is that of log Cat(n): the prior learns the discovered counts as without λ.
        rng = np.random.default_rng(8)
        what, where_lp = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3))
        z_pres = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], np.float64)
        count_logits = tf.constant(rng.normal(size=(4, 4)))
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(count_logits)
            plain = priors.discovery_prior_log_prob_parts(what, where_lp, z_pres, count_logits)
            penalised = priors.discovery_prior_log_prob_parts(what, where_lp, z_pres, count_logits,
                                                              count_penalty=7.5)
        self.assertAllEqual(penalised.continuous, plain.continuous)
        self.assertAllClose(penalised.discrete - plain.discrete, [0.0, -7.5, -15.0, -22.5], atol=1e-12, rtol=0)
        self.assertAllClose(tape.gradient(penalised.discrete, count_logits),
                            tape.gradient(plain.discrete, count_logits), atol=1e-12, rtol=0)
        with self.assertRaisesRegex(ValueError, "count_penalty must be >= 0"):
            priors.discovery_prior_log_prob_parts(what, where_lp, z_pres, count_logits, count_penalty=-1.0)

    def test_end_to_end_with_where_and_count_priors(self):
        where_prior = priors.DiscoveryWherePrior(num_steps=3, hidden_size=4)
        count_prior = priors.CountPrior(num_slots=3)
        c, c_hat = tf.zeros((2, 6)), tf.fill((2, 1), -0.5)
        z_where, _, _ = where_prior.sample(c, c_hat, _SEED)
        z_what = tf.random.stateless_normal((2, 3, 5), _SEED)
        z_pres = tf.constant([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
        log_prob = priors.discovery_prior_log_prob(
            z_what, where_prior.log_prob_of(z_where, c, c_hat), z_pres,
            count_prior(c_hat, t=0), tf.reduce_sum(z_pres, -1))
        self.assertEqual(log_prob.shape, (2,))
        self.assertTrue(np.all(np.isfinite(log_prob.numpy())))
        # Nothing discovered: only the count term log p(n = 0) remains.
        self.assertAllClose(log_prob[1], tf.nn.log_softmax(count_prior(c_hat, t=0))[1, 0])


class TrilNormalLogProbTest(tf.test.TestCase):
    """`priors.tril_normal_log_prob`, PROP's where-proposal density, computed without a TFP bijector."""

    def test_matches_the_dense_gaussian_density_and_its_gradients(self):
        rng = np.random.default_rng(0)
        lower = np.tril(rng.normal(size=(6, 4, 4)), -1) + np.eye(4) * rng.uniform(0.3, 2.0, size=(6, 1, 4))
        lower[0, 2, 2] *= -1.0  # A negative diagonal entry: the density uses |det L|, as TFP's does.
        loc, x = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
        cov = lower @ np.swapaxes(lower, -1, -2)
        diff = x - loc
        expected = (-0.5 * np.einsum("bi,bij,bj->b", diff, np.linalg.inv(cov), diff)
                    - 0.5 * np.log(np.linalg.det(2 * np.pi * cov)))
        got = priors.tril_normal_log_prob(tf.constant(x), tf.constant(loc), tf.constant(lower))
        self.assertAllClose(got, expected, rtol=1e-12, atol=1e-12)
        # float64 gradients against finite differences, through x, loc and the scale.
        theoretical, numerical = tf.test.compute_gradient(
            lambda x, loc, lower: priors.tril_normal_log_prob(x, loc, tf.linalg.band_part(lower, -1, 0)),
            [tf.constant(x), tf.constant(loc), tf.constant(lower)], delta=1e-6)
        for t, n in zip(theoretical, numerical):
            self.assertAllClose(t, n, rtol=1e-6, atol=1e-6)

    def test_a_traced_model_is_freed_when_its_function_is(self):
        """TFP's bijector cache kept every traced graph that used MultivariateNormalTriL alive: a traced forward
        of the model (PROP included) must be garbage once its function is deleted."""
        import gc

        from tensorflow.python.framework import func_graph

        from sqair_tf import config as config_lib
        from sqair_tf import interface
        from sqair_tf import model as model_lib

        config = config_lib.preset("debug")
        model = model_lib.SQAIR(config)
        frames = tf.constant(np.random.default_rng(0).random((2, 3) + config.image_shape) < 0.1, tf.float32)

        def leak_probe_forward(frames):
            out = model(frames, seed=tf.constant([0, 1]), num_particles=2)
            return interface.sequence_log_weights(out, 2)

        probe = tf.function(leak_probe_forward)
        probe(frames)
        del probe
        gc.collect()
        alive = [g.name for g in gc.get_objects()
                 if isinstance(g, func_graph.FuncGraph) and "leak_probe_forward" in g.name]
        self.assertEqual(alive, [])
