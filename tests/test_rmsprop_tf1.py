"""Tests for trainers/rmsprop_tf1.py: TF1 RMSProp semantics against a float64 NumPy reference (BUILD.md O5)."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from trainers import rmsprop_tf1

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reference_rmsprop(theta, gradients, learning_rates, rho=0.9, momentum=0.9, epsilon=1e-10):
    """Slow float64 TF1 RMSProp: ms starts at 1, mom at 0; returns θ after every step, [steps, ...].

    Learning rates are rounded to float32 first, because Keras stores the optimizer's rate in a float32 variable.
    """
    theta = np.array(theta, np.float64)
    mean_square = np.ones_like(theta)
    mom = np.zeros_like(theta)
    trajectory = []
    for gradient, lr in zip(gradients, learning_rates):
        gradient = np.asarray(gradient, np.float64)
        mean_square = rho * mean_square + (1.0 - rho) * gradient ** 2
        mom = momentum * mom + _f32(lr) * gradient / np.sqrt(mean_square + epsilon)
        theta = theta - mom
        trajectory.append(theta.copy())
    return np.stack(trajectory), mean_square, mom


def _f32(value):
    return float(np.float32(value))


def _gradient_sequence(num_steps, shape, seed):
    """Gradients spanning 1e-4..1e0 in magnitude, so ms = 1 dominates for some entries and not for others."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-4, 0, num=int(np.prod(shape))).reshape(shape)
    return scales * (rng.standard_normal((num_steps,) + shape) + 0.5)


class RMSPropTF1Test(tf.test.TestCase, parameterized.TestCase):

    def _run_steps(self, optimizer, variable, gradients, jit_compile=None):
        """Applies `gradients` [steps, ...] one per call of a (possibly jitted) tf.function; returns θ per step."""
        @tf.function(jit_compile=jit_compile)
        def step(gradient):
            optimizer.apply_gradients([(gradient, variable)])

        trajectory = []
        for gradient in gradients:
            step(tf.constant(gradient, variable.dtype))
            trajectory.append(variable.numpy())
        return np.stack(trajectory)

    @parameterized.parameters((np.float64, 1e-12), (np.float32, 2e-5))
    def test_matches_reference_over_many_steps(self, dtype, rtol):
        num_steps, shape = 300, (3, 4)
        gradients = _gradient_sequence(num_steps, shape, seed=0)
        # θ_0 = 0, so θ_t is the optimiser's displacement and a relative tolerance measures its accuracy.
        theta0 = np.zeros(shape)
        variable = keras.Variable(theta0.astype(dtype), dtype=dtype)
        optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=1e-2)
        trajectory = self._run_steps(optimizer, variable, gradients.astype(dtype))
        expected, expected_ms, expected_mom = _reference_rmsprop(theta0, gradients.astype(dtype), [1e-2] * num_steps)
        self.assertAllClose(trajectory, expected, rtol=rtol, atol=rtol * 1e-3)
        self.assertAllClose(optimizer.get_slot(variable, "ms"), expected_ms, rtol=rtol, atol=0)
        self.assertAllClose(optimizer.get_slot(variable, "momentum"), expected_mom, rtol=rtol, atol=rtol * 1e-6)

    def test_first_step_uses_ms_initialised_to_one(self):
        variable = keras.Variable(np.zeros(3), dtype="float64")
        optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=0.1)
        optimizer.build([variable])
        self.assertAllEqual(optimizer.get_slot(variable, "ms"), np.ones(3))
        self.assertAllEqual(optimizer.get_slot(variable, "momentum"), np.zeros(3))
        gradient = np.array([1e-3, 0.5, -2.0])
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        # ms = 0.9·1 + 0.1·g²: the step is ≈ lr·g, not Keras' ≈ lr·sign(g)/√0.1.
        expected = -_f32(0.1) * gradient / np.sqrt(0.9 + 0.1 * gradient ** 2 + 1e-10)
        self.assertAllClose(variable, expected, rtol=1e-14, atol=0)
        keras_variable = keras.Variable(np.zeros(3), dtype="float64")
        keras.optimizers.RMSprop(learning_rate=0.1, momentum=0.9, epsilon=1e-10).apply_gradients(
            [(tf.constant(gradient), keras_variable)])
        self.assertAllClose(keras_variable, -0.1 * np.sign(gradient) / np.sqrt(0.1), rtol=1e-3)

    def test_minimises_quadratic_in_tf_function_like_reference(self):
        # θ-dependent gradients through a GradientTape, as in training: loss = ½ Σ a (θ − 1)².
        a = np.array([0.5, 2.0, 10.0])
        variable = keras.Variable(np.zeros(3), dtype="float64")
        optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=0.01)

        @tf.function
        def train_step():
            with tf.GradientTape() as tape:
                loss = 0.5 * tf.reduce_sum(a * tf.square(variable - 1.0))
            optimizer.apply_gradients(zip(tape.gradient(loss, [variable]), [variable]))
            return loss

        losses = [float(train_step()) for _ in range(200)]
        theta, mean_square, mom = np.zeros(3), np.ones(3), np.zeros(3)
        for _ in range(200):
            gradient = a * (theta - 1.0)
            mean_square = 0.9 * mean_square + 0.1 * gradient ** 2
            mom = 0.9 * mom + _f32(0.01) * gradient / np.sqrt(mean_square + 1e-10)
            theta = theta - mom
        self.assertAllClose(variable, theta, rtol=1e-12, atol=1e-14)
        self.assertLess(losses[-1], 0.01 * losses[0])

    def test_jit_compile_gives_same_result(self):
        gradients = _gradient_sequence(50, (5,), seed=1)
        results = []
        for jit_compile in (False, True):
            variable = keras.Variable(np.ones(5), dtype="float64")
            optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=rmsprop_tf1.paper_learning_rate_schedule(1e-2))
            results.append(self._run_steps(optimizer, variable, gradients, jit_compile=jit_compile))
        self.assertAllClose(results[1], results[0], rtol=1e-13, atol=1e-15)

    def test_learning_rate_schedule_values(self):
        schedule = rmsprop_tf1.paper_learning_rate_schedule()
        expected = {
            0: 1e-5, 399_999: 1e-5, 400_000: 1e-5,  # TF1/Keras piecewise_constant: value[i] while step ≤ boundary
            400_001: 1e-5 / 3, 999_999: 1e-5 / 3, 1_000_000: 1e-5 / 3,
            1_000_001: 1e-5 / 9, 2_000_000: 1e-5 / 9,
        }
        for step, value in expected.items():
            self.assertAllClose(schedule(tf.constant(step, tf.int64)), value, rtol=1e-6, msg=f"step {step}")
        with self.assertRaisesRegex(ValueError, "one more decay factor"):
            rmsprop_tf1.paper_learning_rate_schedule(boundaries=(10,), decay_factors=(1.0,))

    def test_optimizer_reads_schedule_at_iterations(self):
        variable = keras.Variable(np.zeros(2), dtype="float64")
        optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=rmsprop_tf1.paper_learning_rate_schedule())
        optimizer.build([variable])
        optimizer.iterations.assign(400_001)
        self.assertAllClose(optimizer.learning_rate, 1e-5 / 3, rtol=1e-6)
        gradient = np.array([0.3, -0.7])
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        expected = -(1e-5 / 3) * gradient / np.sqrt(0.9 + 0.1 * gradient ** 2 + 1e-10)
        self.assertAllClose(variable, expected, rtol=1e-6, atol=0)

    def test_checkpoint_round_trip_restores_slots_exactly(self):
        gradients = _gradient_sequence(10, (4,), seed=2)

        def make():
            variable = keras.Variable(np.arange(4.0), dtype="float32")
            optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=0.05)
            optimizer.build([variable])  # Build before restoring (stack_notes: Keras 3 checkpoints).
            return variable, optimizer, tf.train.Checkpoint(variable=variable, optimizer=optimizer)

        variable, optimizer, checkpoint = make()
        self._run_steps(optimizer, variable, gradients[:5])
        saved = [v.numpy() for v in optimizer.variables]
        path = checkpoint.save(os.path.join(self.get_temp_dir(), "ckpt"))
        uninterrupted = self._run_steps(optimizer, variable, gradients[5:])

        checkpoint.restore(path).assert_consumed()  # Same objects, state moved on since the save.
        for restored, expected in zip(optimizer.variables, saved):
            self.assertAllEqual(restored, expected)
        self.assertEqual(int(optimizer.iterations), 5)

        fresh_variable, fresh_optimizer, fresh_checkpoint = make()
        fresh_checkpoint.restore(path).assert_consumed()
        for restored, expected in zip(fresh_optimizer.variables, saved):
            self.assertAllEqual(restored, expected)
        resumed = self._run_steps(fresh_optimizer, fresh_variable, gradients[5:])
        self.assertAllEqual(resumed, uninterrupted)

    def test_config_round_trip_and_validation(self):
        optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=0.3, rho=0.8, momentum=0.5, epsilon=1e-8)
        clone = rmsprop_tf1.RMSPropTF1.from_config(optimizer.get_config())
        self.assertEqual((clone.rho, clone.momentum, clone.epsilon), (0.8, 0.5, 1e-8))
        self.assertAllClose(clone.learning_rate, 0.3)
        with self.assertRaisesRegex(ValueError, "rho"):
            rmsprop_tf1.RMSPropTF1(rho=1.0)
        with self.assertRaisesRegex(ValueError, "momentum"):
            rmsprop_tf1.RMSPropTF1(momentum=-0.1)

    def test_mirrored_strategy_two_replicas(self):
        # Logical devices must be configured before TensorFlow initialises, which other tests in this process
        # have already done, so the check runs in a fresh interpreter.
        script = textwrap.dedent("""
            import numpy as np, tensorflow as tf, keras
            from trainers import rmsprop_tf1
            cpu, = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            per_replica_grads = tf.constant([[0.2, -1e-3, 3.0], [0.1, 5e-3, -1.0]], tf.float64)
            with strategy.scope():
                variable = keras.Variable(np.zeros(3), dtype="float64")
                optimizer = rmsprop_tf1.RMSPropTF1(learning_rate=0.01)
                optimizer.build([variable])

            def replica_step():
                replica = tf.distribute.get_replica_context().replica_id_in_sync_group
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(variable * tf.gather(per_replica_grads, replica))
                optimizer.apply_gradients(zip(tape.gradient(loss, [variable]), [variable]))

            @tf.function(jit_compile=False)
            def train_step():
                strategy.run(replica_step)

            for _ in range(20):
                train_step()
            g = per_replica_grads.numpy().sum(0)  # Keras all-reduces replica gradients by summation.
            theta, ms, mom = np.zeros(3), np.ones(3), np.zeros(3)
            for _ in range(20):
                ms = 0.9 * ms + 0.1 * g ** 2
                mom = 0.9 * mom + float(np.float32(0.01)) * g / np.sqrt(ms + 1e-10)
                theta = theta - mom
            copies = strategy.experimental_local_results(variable.value)
            assert len(copies) == 2, copies
            for copy in copies:
                np.testing.assert_allclose(copy.numpy(), theta, rtol=1e-12)
            for slot in optimizer.variables[1:]:
                a, b = strategy.experimental_local_results(slot.value)
                np.testing.assert_array_equal(a.numpy(), b.numpy())
            print("OK")
        """)
        env = dict(os.environ, PYTHONPATH=_REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run([sys.executable, "-c", script], env=env, cwd=_REPO_ROOT, capture_output=True,
                                text=True, timeout=120, check=False)
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        self.assertIn("OK", result.stdout)


if __name__ == "__main__":
    tf.test.main()
