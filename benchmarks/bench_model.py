"""Forward and forward+backward speed of the SQAIR model (issue 3).

Times the `paper` preset at B=32 sequences, K=5 particles, T=10 frames (the paper's training batch), with and
without XLA (`jit_compile=True`), and prints steps/s with the compile (first-call) time.

Usage:
    python benchmarks/bench_model.py [--preset paper] [--batch 32] [--particles 5] [--steps 10] [--repeats 5]
    python benchmarks/bench_model.py --modes fwd_jit,fwdbwd_jit     # a subset
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", help="model preset (default: paper)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch B (default 32)")
    parser.add_argument("--particles", type=int, default=5, help="particles K (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="frames T (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per mode after the first (default 5)")
    parser.add_argument("--modes", default="fwd,fwd_jit,fwdbwd,fwdbwd_jit",
                        help="comma-separated subset of fwd, fwd_jit, fwdbwd, fwdbwd_jit")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from sqair_tf import config as config_lib
    from sqair_tf import interface
    from sqair_tf import model as model_lib
    from sqair_tf import objectives

    config = config_lib.preset(args.preset)
    model = model_lib.SQAIR(config)
    k = args.particles
    rng = np.random.default_rng(0)
    frames = tf.constant(rng.random((args.batch, args.steps) + config.image_shape) < 0.1, tf.float32)
    seed = tf.constant([0, 1], tf.int32)
    model(frames[:1, :1], seed=seed)  # Build the variables.

    def forward(frames, seed):
        out = model(frames, seed=seed, num_particles=k)
        return tf.reduce_mean(objectives.iwae_bound(interface.sequence_log_weights(out, k)))

    def forward_backward(frames, seed):
        with tf.GradientTape() as tape:
            out = model(frames, seed=seed, num_particles=k)
            log_weights = interface.sequence_log_weights(out, k)
            discrete = tf.reshape(tf.reduce_sum(out["log_q_discrete"], 0), [-1, k])
            loss = tf.reduce_mean(objectives.vimco_surrogate_loss(log_weights, discrete))
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, tf.add_n([tf.reduce_sum(g) for g in grads])

    fns = {"fwd": (forward, False), "fwd_jit": (forward, True),
           "fwdbwd": (forward_backward, False), "fwdbwd_jit": (forward_backward, True)}
    print(f"preset={args.preset} B={args.batch} K={k} T={args.steps} params={model.count_params():,} "
          f"TF {tf.__version__}")
    for mode in args.modes.split(","):
        fn, jit = fns[mode]
        compiled = tf.function(fn, jit_compile=jit)
        start = time.perf_counter()
        tf.nest.map_structure(lambda x: x.numpy(), compiled(frames, seed))
        first = time.perf_counter() - start
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            tf.nest.map_structure(lambda x: x.numpy(), compiled(frames, tf.constant([r, 2], tf.int32)))
            times.append(time.perf_counter() - start)
        med = float(np.median(times))
        print(f"{mode:11s} first call (trace+compile) {first:6.1f} s | median {med * 1000:7.0f} ms "
              f"= {1 / med:5.2f} steps/s ({args.batch / med:6.1f} seq/s) | min {min(times) * 1000:.0f} ms "
              f"max {max(times) * 1000:.0f} ms over {args.repeats}")


if __name__ == "__main__":
    main()
