"""Learning curves of two codes or recipes, seed by seed (issue 11: "accuracy against steps must not get worse").

One training run is one draw: two runs of the same recipe with different seeds differ by several points of counting
accuracy at the same step (benchmarks/RESULTS.md, the three `tracking` seeds), so one run per code cannot show that
a change left learning alone. This compares groups of runs trained with the same seeds. Each run's trainer logged
its held-out figures every `eval_every` steps to WORKDIR/tensorboard/eval (`held_out/<tag>`, the first
`eval_batch_size` test sequences at T = 10); runs are paired by position within their groups (the same seed, so the
same initial weights and data order), and the script prints:

  * per step, each run's value and each group's mean;
  * per run, the mean over the steps in `--window`, and per pair the difference of those means (second group minus
    first): the paired differences are what a real change would move, the spread between seeds is the noise.

Runs trained by any code that writes the same TensorBoard tags compare, e.g. the code of 56e5e2a against today's:

    for s in 1 2 3; do
      PYTHONPATH=../base python -m trainers.train --workdir runs/old_s$s --preset fast --data DATA --steps 8000 --set seed=$s
      python -m trainers.train --workdir runs/new_s$s --preset fast --data DATA --steps 8000 --set seed=$s
    done

Usage:
    python benchmarks/compare_learning_curves.py --group NAME=RUN,RUN,... --group NAME=RUN,RUN,...
        [--tag counting_accuracy] [--window 2000,8000]
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_group(text):
    """'NAME=RUN,RUN' → (NAME, [RUN, RUN])."""
    name, sep, runs = text.partition("=")
    if not sep or not name or not runs:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN[,RUN...], got {text!r}")
    return name, runs.split(",")


def compare(groups, curves, window):
    """Markdown tables of `curves` ({run: {step: value}}) for `groups` ([(name, [run, ...])]) over `window`."""
    lo, hi = window
    runs = [run for _, members in groups for run in members]
    steps = sorted(set.intersection(*(set(curves[run]) for run in runs)))
    label = {run: f"{name} {i + 1}" for name, members in groups for i, run in enumerate(members)}
    lines = ["| step | " + " | ".join(label[run] for run in runs) + " | "
             + " | ".join(f"{name} mean" for name, _ in groups) + " |",
             "|---" * (1 + len(runs) + len(groups)) + "|"]
    for step in steps:
        values = [f"{curves[run][step]:.3f}" for run in runs]
        means = [f"{statistics.mean(curves[run][step] for run in members):.3f}" for _, members in groups]
        lines.append(f"| {step} | " + " | ".join(values + means) + " |")
    in_window = [step for step in steps if lo <= step <= hi]
    if not in_window:
        raise SystemExit(f"no step common to all runs in the window {lo}-{hi} (common steps: {steps})")
    window_mean = {run: statistics.mean(curves[run][step] for step in in_window) for run in runs}
    lines += ["", f"Mean over the {len(in_window)} evaluations from step {in_window[0]} to {in_window[-1]}:", "",
              "| pair | " + " | ".join(name for name, _ in groups) + " | difference (second − first) |",
              "|---|---|---|---|"]
    (first, first_runs), (second, second_runs) = groups
    differences = []
    for i, (a, b) in enumerate(zip(first_runs, second_runs)):
        differences.append(window_mean[b] - window_mean[a])
        lines.append(f"| {i + 1} | {window_mean[a]:.4f} | {window_mean[b]:.4f} | {differences[-1]:+.4f} |")
    mean_a = statistics.mean(window_mean[run] for run in first_runs)
    mean_b = statistics.mean(window_mean[run] for run in second_runs)
    spread = (f"; the paired differences range from {min(differences):+.4f} to {max(differences):+.4f}"
              if len(differences) > 1 else "")
    lines.append(f"| mean | {mean_a:.4f} | {mean_b:.4f} | {mean_b - mean_a:+.4f} |")
    lines += ["", f"{second} − {first}: {mean_b - mean_a:+.4f} on average over {len(differences)} pairs{spread}."]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", type=parse_group, action="append", required=True,
                        help="NAME=RUN,RUN,...: a code or recipe and its runs, seed by seed; give exactly two")
    parser.add_argument("--tag", default="counting_accuracy",
                        help="held-out scalar to compare (held_out/TAG in the runs' TensorBoard eval logs): "
                             "counting_accuracy (default), iwae, elbo, num_objects, ess")
    parser.add_argument("--window", default="2000,8000",
                        help="first,last step of the window the per-run means cover (default 2000,8000)")
    args = parser.parse_args()
    if len(args.group) != 2:
        parser.error(f"give exactly two --group, got {len(args.group)}")
    if len(args.group[0][1]) != len(args.group[1][1]):
        parser.error("the two groups must have the same number of runs (paired by seed)")
    try:
        window = tuple(int(v) for v in args.window.split(","))
        if len(window) != 2 or window[0] > window[1]:
            raise ValueError
    except ValueError:
        parser.error(f"--window must be FIRST,LAST with FIRST <= LAST, got {args.window!r}")

    from trainers import run_history

    curves = {}
    for _, members in args.group:
        for run in members:
            curves[run] = run_history.scalars(run, "eval", f"held_out/{args.tag}")
            if not curves[run]:
                parser.error(f"{run} has no held_out/{args.tag} in {os.path.join(run, 'tensorboard', 'eval')}")
    print(f"held_out/{args.tag}\n")
    print(compare(args.group, curves, window))


if __name__ == "__main__":
    main()
