"""Cost of serving a trained run (issue 6): export time, SavedModel size, `track` latency.

Exports WORKDIR's latest checkpoint to a temporary base with `serving.export.export_model`, reloads it with
`tf.saved_model.load` (what a client sees) and times the `track` signature on 1 and 32 sequences of T frames at the
model's image size: one warm-up call per batch size, then the median of --repeats calls.

Usage:
    python benchmarks/bench_export.py --workdir /tmp/exp_paper [--k 5] [--frames 10] [--repeats 5]
    python -m trainers.train --workdir /tmp/exp_paper --preset paper --data /work/data/mnist --steps 1 --no-progress
        # a paper-size run directory to measure
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # Runnable from a checkout.


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="run directory written by sqair-train")
    parser.add_argument("--k", type=int, default=5, help="particles K of the exported `track` (default 5)")
    parser.add_argument("--frames", type=int, default=10, help="frames T per sequence (default 10)")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes to time (default 1,32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch size after warm-up (default 5)")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from serving import export

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs")
    out_base = tempfile.mkdtemp(prefix="bench_export_")
    try:
        start = time.perf_counter()
        path = export.export_model(args.workdir, out_base, num_particles=args.k)
        export_seconds = time.perf_counter() - start
        size = export.directory_size(path)
        start = time.perf_counter()
        loaded = tf.saved_model.load(path)
        load_seconds = time.perf_counter() - start
        track = loaded.signatures["track"]
        h, w, c = (int(d) for d in track.structured_outputs["reconstruction"].shape[2:])
        print(f"export (load checkpoint + trace + write): {export_seconds:.1f} s; SavedModel {size / 1e6:.1f} MB "
              f"on disk; tf.saved_model.load {load_seconds:.1f} s; K={args.k}, frames {h}x{w}x{c}")
        rng = np.random.default_rng(0)
        for batch in (int(b) for b in args.batches.split(",")):
            frames = tf.constant((rng.random((batch, args.frames, h, w, c)) < 0.05).astype(np.float32))
            start = time.perf_counter()
            track(frames=frames)["counts"].numpy()
            first = time.perf_counter() - start
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                track(frames=frames)["counts"].numpy()
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            print(f"track B={batch:>3} T={args.frames}: median {median * 1e3:8.1f} ms/call "
                  f"({median * 1e3 / batch:7.1f} ms/sequence; min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, "
                  f"first call {first * 1e3:.1f} ms, {args.repeats} timed calls)")
    finally:
        shutil.rmtree(out_base, ignore_errors=True)


if __name__ == "__main__":
    main()
