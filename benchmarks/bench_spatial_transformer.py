"""Times glimpse extraction and rendering at SQAIR's training size.

640 glimpses (batch 32 × 5 particles × 4 calls/step is the right order of magnitude) of 20×20 from 50×50×1
images: forward and forward+backward (gradients w.r.t. pixels and z_where), as tf.function with and without
XLA.

Run:
    cd /work/main && TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m benchmarks.bench_spatial_transformer
(or `PYTHONPATH=. .venv/bin/python benchmarks/bench_spatial_transformer.py`; no install needed).
"""
import argparse
import time

import tensorflow as tf

from sqair_tf import spatial_transformer as st


def _time_ms(fn, args, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    return 1e3 * (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_glimpses", type=int, default=640)
    parser.add_argument("--image_size", type=int, default=50)
    parser.add_argument("--glimpse_size", type=int, default=20)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    n, h, g = args.num_glimpses, args.image_size, args.glimpse_size
    images = tf.random.stateless_uniform((n, h, h, 1), seed=[0, 1])
    glimpses = tf.random.stateless_uniform((n, g, g, 1), seed=[0, 2])
    z_where = tf.random.stateless_normal((n, 4), seed=[0, 3])

    def extract(x, w):
        return st.extract_glimpses(x, w, g)

    def render(x, w):
        return st.render_glimpses(x, w, (h, h))

    def with_grad(op):
        def fn(x, w):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = op(x, w)
                loss = tf.reduce_sum(tf.square(y))
            return (loss,) + tuple(tape.gradient(loss, [x, w]))
        return fn

    print(f"{n} glimpses of {g}x{g} from {h}x{h}x1, float32, ms per call "
          f"(mean of {args.iters} after {args.warmup} warm-up calls)")
    print(f"{'op':<8}{'pass':<18}{'tf.function':>12}{'jit':>10}")
    for name, op, x in (("extract", extract, images), ("render", render, glimpses)):
        for pass_name, fn in (("forward", op), ("forward+backward", with_grad(op))):
            plain = _time_ms(tf.function(fn), (x, z_where), args.warmup, args.iters)
            jitted = _time_ms(tf.function(fn, jit_compile=True), (x, z_where), args.warmup, args.iters)
            print(f"{name:<8}{pass_name:<18}{plain:>12.2f}{jitted:>10.2f}")


if __name__ == "__main__":
    main()
