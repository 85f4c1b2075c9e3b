"""Multi-worker training on one machine (issue 15): steps/s of 2 workers × 1 core against 1 process on 2 cores, the
per-replica compute at smaller batches, and the bytes all-reduced per step (computed and measured).

Every configuration runs the real `sqair-train` (or `sqair-train-cluster`) on a scratch run directory, by default
with the `fast` preset (the paper's model, batch 16, T = 3, XLA), and reads steps/s from the chief's TensorBoard
`steps_per_sec` scalars: the median over the loops after the first two (tracing and XLA compilation).

  1 process, all cores, batch b        the default strategy (the fused one-cluster XLA step), for each b of
                                        --batches: b = B/N is one replica's share on N workers
  1 process, 1 core, batch B/2         what each of the 2 workers below computes, without communication
  1 worker × 1 core, batch B/2         the multi-worker step (split path: update outside XLA, collectives) on a
                                        cluster of one: its cost without anything to send
  2 workers × 1 core, batch B          `sqair-train-cluster --workers 2 --cpus-per-worker 1`: per replica B/2
                                        sequences, gradients all-reduced over loopback gRPC every step
(B is the first of --batches.)

The all-reduce volume is computed from the model (every trainable variable is all-reduced once per step, float32:
4 bytes per parameter, plus a handful of scalars) and measured as the bytes that cross the loopback interface
(`/proc/net/dev`, received bytes of `lo`) during the 2-worker run, divided by its steps after subtracting the
start-up broadcast of the initial variables.

Usage:
    python benchmarks/bench_multiworker.py [--data DATA_DIR] [--steps 150] [--steps-per-loop 25]
        [--batches 16,8,4,2] [--preset fast] [--set key=value ...] [--json OUT]
    python benchmarks/bench_multiworker.py --preset paper --set curriculum_start=10 --set jit_compile=true \\
        --batches 32,16,8,4 --steps 50 --steps-per-loop 10     # the paper's recipe at full length (T = 10)
(The paper preset without XLA fails at B = 32, T = 10 with TensorFlow's AlreadyExistsError on a temporary
variable of the time loop's gradient, also at the commit before issue 15: benchmarks/RESULTS.md, issue 15.)
Without --data, 2,000 training and 200 test sequences of the paper's data are generated into a scratch directory.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loopback_received_bytes():
    """Bytes received on the loopback interface since boot (Linux), or None."""
    try:
        with open("/proc/net/dev") as f:
            for line in f:
                name, _, fields = line.partition(":")
                if name.strip() == "lo":
                    return int(fields.split()[0])
    except OSError:
        return None
    return None


def steps_per_second(workdir, skip_loops=2):
    """Median steps/s over the chief's logged loops after the first `skip_loops`, and the loops used."""
    import tensorflow as tf

    values = []
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "train", "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "steps_per_sec":
                    values.append((event.step, float(tf.make_ndarray(value.tensor))))
    values = [v for _, v in sorted(values)][skip_loops:]
    return (statistics.median(values) if values else float("nan")), len(values)


def run(command, workdir, env, cpus=None):
    """Runs one configuration to its end (on `cpus` only, if given); returns (wall seconds, loopback bytes received
    during it)."""
    before, start = loopback_received_bytes(), time.perf_counter()
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=pin)
    elapsed = time.perf_counter() - start
    after = loopback_received_bytes()
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(command)}\n{out.stderr[-3000:]}\n{out.stdout[-2000:]}")
    return elapsed, (after - before if before is not None and after is not None else None)


def model_bytes(preset, data_dir):
    """(trainable parameters, float32 bytes all-reduced per step for them, bytes of every variable created under
    the strategy at start: model weights plus the optimizer's slots, broadcast once from the chief)."""
    import numpy as np

    from data_pipelines import records
    from sqair_tf import models
    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    cfg = config_lib.preset(preset, [f"data_dir={data_dir}"])
    manifest = records.read_manifest(data_dir, "train")
    model = models.build(cfg.model_name, cfg.model, mean_image=np.asarray(manifest["mean_frame"],
                                                                          np.float32)[..., None])
    h, w, c = cfg.model.image_shape
    import tensorflow as tf
    model(tf.zeros([1, 1, h, w, c]), seed=tf.constant([0, 0]))
    optimizer = trainer_lib.make_optimizer(cfg)
    optimizer.build(model.trainable_variables)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    every = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights + optimizer.variables)
    return params, 4 * params, every


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data directory with train and test splits of 50×50 frames (default: "
                                       "generate 2,000 + 200 paper sequences into a scratch directory)")
    parser.add_argument("--preset", default="fast", help="training preset (default fast)")
    parser.add_argument("--steps", type=int, default=150, help="steps per configuration (default 150)")
    parser.add_argument("--steps-per-loop", type=int, default=25, help="steps per logged loop (default 25)")
    parser.add_argument("--batches", default="16,8,4,2",
                        help="global batches of the single-process runs, the first being the 2-worker run's "
                             "(default 16,8,4,2: the per-replica batches of 1, 2, 4 and 8 workers at the fast "
                             "preset's batch 16)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, repeatable (curriculum_start=10 for T = 10)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.setdefault("SQAIR_XLA_CACHE", "off")  # Every configuration compiles afresh, as the first one does.
    scratch = tempfile.mkdtemp(prefix="bench_multiworker_")
    try:
        measure(args, env, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(args, env, scratch):
    """Runs every configuration in `scratch` and prints (and optionally writes) the figures."""
    data = args.data
    if data is None:
        data = os.path.join(scratch, "data")
        for split, num, seed in (("train", 2000, 0), ("test", 200, 1)):
            subprocess.run([sys.executable, "-m", "data_pipelines.cli", "generate", "--out", data, "--split", split,
                            "--num", str(num), "--seed", str(seed)], cwd=REPO, env=env, check=True,
                           capture_output=True)
    common = ["--preset", args.preset, "--data", data, "--steps", str(args.steps), "--no-progress",
              "--set", f"steps_per_loop={args.steps_per_loop}", "--set", "checkpoint_every=1000000",
              "--set", "eval_every=1000000", "--set", "image_every=1000000"]
    for assignment in args.set:
        common += ["--set", assignment]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    results = {"command": " ".join(["python", "benchmarks/bench_multiworker.py"] + sys.argv[1:]),
               "cpus": len(os.sched_getaffinity(0)), "preset": args.preset, "steps": args.steps, "runs": []}

    def record(name, command, workdir, cpus=None, **extra):
        wall, lo_bytes = run(command, workdir, env, cpus)
        rate, loops = steps_per_second(workdir)
        row = dict(name=name, steps_per_sec=rate, loops=loops, wall_s=wall, loopback_bytes=lo_bytes, **extra)
        results["runs"].append(row)
        print(f"{name:44} {rate:6.3f} steps/s (median of {loops} loops; {wall:5.0f} s wall)", flush=True)
        return row

    for batch in batches:
        workdir = os.path.join(scratch, f"single_b{batch}")
        record(f"1 process, {results['cpus']} cores, batch {batch}",
               [sys.executable, "-m", "trainers.train", "--workdir", workdir, *common, "--set", f"batch_size={batch}"],
               workdir, batch=batch, workers=1)
    batch, workdir = batches[0] // 2, os.path.join(scratch, "one_core")
    record(f"1 process, 1 core, batch {batch}",
           [sys.executable, "-m", "trainers.train", "--workdir", workdir, *common, "--set", f"batch_size={batch}"],
           workdir, cpus=set(sorted(os.sched_getaffinity(0))[:1]), batch=batch, workers=1, cores=1)
    workdir = os.path.join(scratch, "one_worker")
    record(f"1 worker × 1 core, batch {batch} (multi-worker step)",
           [sys.executable, "-m", "trainers.cluster", "--workers", "1", "--cpus-per-worker", "1", "--",
            "--workdir", workdir, *common, "--set", f"batch_size={batch}"], workdir, batch=batch, workers=1)
    workdir = os.path.join(scratch, "two_workers")
    two = record(f"2 workers × 1 core, batch {batches[0]} ({batches[0] // 2} per replica)",
                 [sys.executable, "-m", "trainers.cluster", "--workers", "2", "--cpus-per-worker", "1", "--",
                  "--workdir", workdir, *common, "--set", f"batch_size={batches[0]}"], workdir, batch=batches[0],
                 workers=2)

    params, grad_bytes, start_bytes = model_bytes(args.preset, data)
    scalars = (1 + 8 + 1) * 4  # Per step: the non-finite vote, the summed metrics, the applied flag (float32).
    results.update(parameters=params, gradient_bytes_per_step=grad_bytes, scalar_bytes_per_step=scalars,
                   startup_broadcast_bytes=start_bytes)
    # A ring all-reduce of S bytes over N workers sends 2(N−1)/N·S per worker: for N = 2, S per worker, and the
    # loopback interface carries both workers' traffic.
    if two["loopback_bytes"] is not None:
        per_step = (two["loopback_bytes"] - start_bytes) / args.steps
        results["measured_loopback_bytes_per_step"] = per_step
        print(f"all-reduce per step: computed {grad_bytes / 1e6:.2f} MB of gradients ({params:,} float32 "
              f"parameters) + {scalars} B of scalars; ring traffic for 2 workers {2 * grad_bytes / 1e6:.2f} MB on "
              f"the loopback; measured {per_step / 1e6:.2f} MB per step (loopback bytes during the run minus the "
              f"{start_bytes / 1e6:.1f} MB start-up broadcast, over {args.steps} steps)")
    print(f"rerun on an idle machine with: {results['command']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
