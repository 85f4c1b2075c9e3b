"""Training throughput of the Trainer (issue 4): steps/s, sequences/s and compile time per configuration.

Runs the real `trainers.trainer.Trainer` (data pipeline, VIMCO loss, optimizer update, metrics) on a scratch run
directory for each (T, jit) combination and reports the median time of a loop of `--steps-per-loop` steps after
a warm-up loop (which includes tracing and, with jit, XLA compilation).

Usage:
    python benchmarks/bench_train.py --data DATA_DIR [--preset paper] [--lengths 10,3] [--jit both|on|off]
        [--loops 3] [--steps-per-loop 10] [--set key=value ...]
DATA_DIR needs `train` and `test` splits (e.g. `sqair-data generate --out DATA_DIR --split train --num 2000`).
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data directory with train and test splits")
    parser.add_argument("--preset", default="paper", help="training preset (default: paper)")
    parser.add_argument("--lengths", default="10,3", help="sequence lengths T to time (default 10,3)")
    parser.add_argument("--jit", default="both", choices=("both", "on", "off"), help="XLA settings to time")
    parser.add_argument("--loops", type=int, default=3, help="timed loops after the warm-up (default 3)")
    parser.add_argument("--steps-per-loop", type=int, default=10, help="steps per loop (default 10)")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    args = parser.parse_args()

    import numpy as np

    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    jits = {"both": (False, True), "on": (True,), "off": (False,)}[args.jit]
    for length in (int(v) for v in args.lengths.split(",")):
        for jit in jits:
            workdir = tempfile.mkdtemp(prefix="bench_train_")
            n = args.steps_per_loop
            config = config_lib.preset(args.preset, [
                f"data_dir={args.data}", f"jit_compile={jit}", f"curriculum_start={length}",
                f"max_seq_len={length}", f"steps_per_loop={n}", "checkpoint_every=1000000",
                "eval_every=1000000", "image_every=1000000", "total_steps=1000000"] + args.set)
            trainer = trainer_lib.Trainer(config, workdir, progress=False, log=lambda *a: None)
            # finalize=False: a timed loop is training steps only, without the held-out evaluation and checkpoint
            # that `train` adds when it reaches its target step (they cost ~1.3 s per call at this size).
            start = time.perf_counter()
            trainer.train(total_steps=n, finalize=False)
            first = time.perf_counter() - start
            times = []
            for i in range(args.loops):
                start = time.perf_counter()
                trainer.train(total_steps=n * (i + 2), finalize=False)
                times.append(time.perf_counter() - start)
            med = float(np.median(times)) / n
            print(f"{args.preset} B={config.batch_size} K={config.num_particles} T={length} jit={jit!s:5} | "
                  f"first loop (trace+compile+{n} steps) {first:6.1f} s | median {1 / med:5.2f} steps/s "
                  f"({config.batch_size / med:6.1f} seq/s) | loops: "
                  + ", ".join(f"{n / t:.2f}" for t in times) + " steps/s", flush=True)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
