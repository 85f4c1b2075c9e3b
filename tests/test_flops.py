"""The FLOP counter of `benchmarks/flops.py` (issue 11's fraction-of-peak figures rest on it): hand-built graphs
with known matmul FLOPs, including a while loop whose body counts once per trip."""
import importlib.util
import os

import tensorflow as tf

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "flops.py")
_spec = importlib.util.spec_from_file_location("bench_flops", _PATH)
flops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flops)


def _count(fn, *specs, trips=1):
    return flops.concrete_flops(tf.function(fn).get_concrete_function(*specs), trips)


def test_matmul_batch_matmul_and_einsum_count_two_flops_per_multiply_add():
    a, b = tf.TensorSpec([3, 4]), tf.TensorSpec([4, 5])
    assert _count(lambda x, y: tf.matmul(x, y), a, b) == 2 * 3 * 5 * 4
    assert _count(lambda x, y: tf.matmul(x, y, transpose_a=True), tf.TensorSpec([4, 3]), b) == 2 * 3 * 5 * 4
    batched = (tf.TensorSpec([6, 3, 4]), tf.TensorSpec([6, 4, 5]))
    assert _count(lambda x, y: tf.matmul(x, y), *batched) == 2 * 6 * 3 * 5 * 4
    assert _count(lambda x, y: tf.einsum("bij,bjk->bik", x, y), *batched) == 2 * 6 * 3 * 5 * 4
    # Two contracted letters: 2 · |output| · (j · k).
    assert _count(lambda x, y: tf.einsum("ijk,jkl->il", x, y), tf.TensorSpec([2, 3, 4]),
                  tf.TensorSpec([3, 4, 7])) == 2 * (2 * 7) * (3 * 4)
    # Element-wise work is not counted.
    assert _count(lambda x: x * x + 1.0, a) == 0


def test_a_while_loop_body_counts_once_per_trip():
    a, b = tf.TensorSpec([3, 4]), tf.TensorSpec([4, 4])

    def loop(x, w):
        return tf.while_loop(lambda i, x: i < 7, lambda i, x: (i + 1, tf.matmul(x, w)), (0, x))[1]

    assert _count(loop, a, b, trips=7) == 7 * 2 * 3 * 4 * 4
    # And a matmul outside the loop counts once.
    assert _count(lambda x, w: tf.matmul(loop(x, w), w), a, b, trips=7) == 8 * 2 * 3 * 4 * 4
