"""Evaluation throughput at K=1000 and its peak memory (issue 5).

Runs the real `sqair-eval` in a subprocess (no addition experiment, no figures, so the time is the many-particle
evaluation and the tracking metrics) and reports sequences/s and the subprocess's peak resident memory
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`). The time includes the one-off XLA compilation, done afresh every time
(`SQAIR_XLA_CACHE=off`) so that runs compare; set `SQAIR_XLA_CACHE=DIR` to time a start from a filled cache.

Usage:
    python benchmarks/bench_eval.py --workdir RUN_DIR [--k 1000] [--num 20] [--chunk 50] [--batch 10] [--[no-]jit]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a run directory with a checkpoint")
    parser.add_argument("--k", type=int, default=1000, help="particles (default 1000)")
    parser.add_argument("--num", type=int, default=20, help="test sequences (default 20)")
    parser.add_argument("--chunk", type=int, default=50, help="particles per forward pass (default 50)")
    parser.add_argument("--batch", type=int, default=10, help="sequences per forward pass (default 10)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="pass --jit / --no-jit to sqair-eval (default: sqair-eval's own default)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "evaluation.cli", "--workdir", args.workdir, "--k", str(args.k),
               "--num", str(args.num), "--chunk", str(args.chunk), "--batch", str(args.batch), "--no-addition",
               "--no-progress"] + ({True: ["--jit"], False: ["--no-jit"], None: []}[args.jit])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("SQAIR_XLA_CACHE", "off")
    start = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2  # ru_maxrss is in KiB on Linux.
    stem = os.path.join(args.workdir, "eval", [f for f in sorted(os.listdir(os.path.join(args.workdir, "eval")))
                                                if f.endswith(f"-k{args.k}.json")][-1])
    with open(stem) as f:
        report = json.load(f)
    seconds = report["seconds"]
    print(" ".join(command[1:]))
    jit = report.get("jit", args.jit)
    print(f"K={args.k} chunk={args.chunk} batch={args.batch} jit={jit}: {report['num_sequences']} sequences in "
          f"{seconds:.1f} s of evaluation ({report['num_sequences'] / seconds:.3f} seq/s, "
          f"{report['num_sequences'] * args.k / seconds:,.0f} particle-sequences/s), {wall:.1f} s wall with start-up; "
          f"peak RSS {peak_gb:.2f} GB; IWAE {report['log_px_iwae']:.1f}, counting acc "
          f"{report['counting_accuracy']:.4f}")
    if "first_batch_seconds" in report and report["num_sequences"] > report["first_batch_sequences"]:
        rest = report["particle_seconds"] - report["first_batch_seconds"]
        print(f"  after the first batch (which took {report['first_batch_seconds']:.1f} s with tracing/compilation): "
              f"{(report['num_sequences'] - report['first_batch_sequences']) / rest:.3f} sequences/s")


if __name__ == "__main__":
    main()
