"""Time to quality (issue 4): train a preset for a wall-clock budget and measure held-out counting accuracy.

Every `--every` minutes of training wall time, training pauses and the model is evaluated on the first
`--num-eval` test sequences (full length, K particles, `trainers.evaluator.evaluate_split`); the evaluation time
is not counted as training time. Each point is printed and appended to WORKDIR/time_to_quality.jsonl.

Machines of this kind differ several-fold in speed, and a shared machine makes fewer steps per minute, so runs
meant to be compared across machines or codes take a step budget instead: `--steps N` stops at global step N
(or at `--minutes`, whichever comes first) and `--every-steps M` evaluates every M steps instead of every
`--every` minutes. The minutes are still recorded next to each point.

Usage:
    python benchmarks/bench_time_to_quality.py --data DATA_DIR --workdir WORKDIR [--preset fast]
        [--minutes 60] [--every 5] [--steps N] [--every-steps M] [--num-eval 1000] [--set key=value ...]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data directory with train and test splits")
    parser.add_argument("--workdir", required=True, help="run directory (a fresh one measures from scratch)")
    parser.add_argument("--preset", default="fast", help="training preset (default: fast)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-clock budget (default 60)")
    parser.add_argument("--every", type=float, default=5.0, help="minutes between evaluations (default 5)")
    parser.add_argument("--steps", type=int, help="also stop at this global step (default: no step budget)")
    parser.add_argument("--every-steps", type=int,
                        help="evaluate at every multiple of this many steps, instead of every --every minutes "
                             "(a multiple of --chunk)")
    parser.add_argument("--num-eval", type=int, default=1000, help="held-out sequences per evaluation (1000)")
    parser.add_argument("--chunk", type=int, default=50, help="steps between wall-clock checks (default 50)")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    args = parser.parse_args()
    if args.every_steps is not None and (args.every_steps <= 0 or args.every_steps % args.chunk):
        parser.error(f"--every-steps must be a positive multiple of --chunk ({args.chunk}), got {args.every_steps}")
    if args.steps is not None and args.steps <= 0:
        parser.error(f"--steps must be positive, got {args.steps}")

    from trainers import config as config_lib
    from evaluation import evaluator
    from trainers import trainer as trainer_lib

    config = config_lib.preset(args.preset, [f"data_dir={args.data}"] + args.set)
    trainer = trainer_lib.Trainer(config, args.workdir, progress=False)
    log_path = os.path.join(args.workdir, "time_to_quality.jsonl")

    def evaluate(train_seconds):
        result = evaluator.evaluate_split(trainer.model, args.data, "test", args.num_eval, config.num_particles,
                                           seed=1)
        point = {"train_minutes": round(train_seconds / 60, 2), "step": int(trainer.step.numpy()),
                 "seq_len": config.seq_len(int(trainer.step.numpy()), trainer.data_len), **result}
        with open(log_path, "a") as f:
            f.write(json.dumps(point) + "\n")
        print(f"{point['train_minutes']:6.1f} min  step {point['step']:6d}  L={point['seq_len']}  counting acc "
              f"{result['counting_accuracy']:.4f}  visible-count acc {result['visible_counting_accuracy']:.4f}  "
              f"IWAE {result['iwae']:.1f}  ({result['seconds']:.0f} s eval)", flush=True)

    def step():
        return int(trainer.step.numpy())

    def budget_spent(seconds):
        return seconds >= args.minutes * 60 or (args.steps is not None and step() >= args.steps)

    trained = 0.0
    evaluate(trained)
    next_eval = args.every * 60
    while not budget_spent(trained):
        start = time.perf_counter()
        before = step()
        target = before + args.chunk
        trainer.train(total_steps=target if args.steps is None else min(target, args.steps), finalize=False)
        trained += time.perf_counter() - start
        if args.every_steps is not None:  # Crossed a multiple of --every-steps (a resumed run may start off-grid).
            due = step() // args.every_steps > before // args.every_steps
        else:
            due = trained >= next_eval
            next_eval += args.every * 60 if due else 0
        if due or budget_spent(trained):
            evaluate(trained)
    trainer.save()


if __name__ == "__main__":
    main()
