"""Time to quality (issue 4): train a preset for a wall-clock budget and measure held-out counting accuracy.

Every `--every` minutes of training wall time, training pauses and the model is evaluated on the first
`--num-eval` test sequences (full length, K particles, `trainers.evaluator.evaluate_split`); the evaluation time
is not counted as training time. Each point is printed and appended to WORKDIR/time_to_quality.jsonl.

Usage:
    python benchmarks/bench_time_to_quality.py --data DATA_DIR --workdir WORKDIR [--preset fast]
        [--minutes 60] [--every 5] [--num-eval 1000] [--set key=value ...]
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
    parser.add_argument("--num-eval", type=int, default=1000, help="held-out sequences per evaluation (1000)")
    parser.add_argument("--chunk", type=int, default=50, help="steps between wall-clock checks (default 50)")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    args = parser.parse_args()

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

    trained = 0.0
    evaluate(trained)
    next_eval = args.every * 60
    while trained < args.minutes * 60:
        start = time.perf_counter()
        trainer.train(total_steps=int(trainer.step.numpy()) + args.chunk, finalize=False)
        trained += time.perf_counter() - start
        if trained >= next_eval or trained >= args.minutes * 60:
            evaluate(trained)
            next_eval += args.every * 60
    trainer.save()


if __name__ == "__main__":
    main()
