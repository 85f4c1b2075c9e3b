"""Tracking quality against training steps (issue 10): every checkpoint of one or more runs, scored on held-out data.

For each run directory and each checkpoint it keeps (the `tracking` presets keep one every 1,000 steps), this runs
`sqair-eval`'s evaluation (`evaluation.cli.run_evaluation`) on the first `--num` test sequences at full length
(T = 10) with `--k` particles and no addition experiment, and appends one line per checkpoint to RUN/quality_curve.jsonl
(checkpoints already there are skipped, so the benchmark resumes); `--refine-steps N` scores the boxes of latents
refined on the frames (`sqair-eval --refine-steps`, with `--motion-weight`) as lines of their own. It then prints,
per run and step: the curriculum length L, the paper's counting accuracy, the per-frame visible-digit accuracy
(present objects, importance-weighted), the share of frames whose best-particle detections number the visible
digits (`tracking_metrics.detection_count_accuracy`), MOTA, IDF1, HOTA, the median IoU of matched pairs (the
model's `boxes`) and the training-loop minutes to reach the step (`trainers/run_history.py`: compilation after each
start included, periodic evaluations and checkpoints excluded; the machine's minutes, shared with whatever else
ran), and, across runs, each run's figures at the last common step (the issue's multi-seed table). A checkpoint
scored under another box rule (`glimpse.box_rule()`: before the boxes were those of the pixels an object explains,
or before objects that draw nothing stopped counting as detections) or before the detection count was recorded is
scored again.
Train the runs first, e.g. three seeds:

    for s in 0 1 2; do sqair-train --workdir runs/track_s$s --preset tracking_penalised --data DATA --set seed=$s; done

Usage:
    python benchmarks/bench_tracking.py RUN [RUN ...] [--num 1000] [--k 5] [--data DATA] [--every STEPS]
        [--refine-steps N [--motion-weight λ]]
"""

import argparse
import glob
import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def checkpoints_of(workdir):
    """(step, prefix) of every checkpoint in WORKDIR/checkpoints, by step."""
    found = []
    for index in glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.index")):
        prefix = index[:-len(".index")]
        found.append((int(re.search(r"ckpt-(\d+)$", prefix).group(1)), prefix))
    return sorted(found)


def evaluate_run(workdir, num, k, data, every=1, refine_steps=0, motion_weight=None):
    """Scores the checkpoints of `workdir` at multiples of `every` steps not yet in its quality_curve.jsonl;
    returns all its lines for (num, k, refine_steps, the refinement's effective motion weight) by step."""
    from sqair_tf import glimpse, refinement
    from trainers import config as config_lib
    from evaluation import cli as eval_cli
    from trainers import run_history

    path = os.path.join(workdir, "quality_curve.jsonl")
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                point = json.loads(line)
                # Points scored under an earlier box rule (drawn boxes; objects drawing nothing counted as
                # detections) or before the detection count was recorded are scored again.
                if (point.get("box_rule") == glimpse.box_rule() and point.get("empty_boxes_skipped", False)
                        and "detection_count_accuracy" in point):
                    done[(point["step"], point["num"], point["k"], point.get("refine_steps", 0),
                          point.get("motion_weight", 0.0))] = point
    with open(os.path.join(workdir, "config.json")) as f:
        config = config_lib.TrainConfig.from_json(f.read())
    refined = (refine_steps, refinement.effective_motion_weight(refine_steps, motion_weight))
    for step, prefix in checkpoints_of(workdir):
        if (step, num, k) + refined in done or step % every:
            continue
        args = eval_cli.evaluation_args(workdir, checkpoint=prefix, data=data, k=k, num=num, chunk=k, batch=50,
                                        jit=False, no_addition=True, no_progress=True, refine_steps=refine_steps,
                                        motion_weight=motion_weight)
        report, _ = eval_cli.run_evaluation(args)
        t = report["tracking"]
        point = {"step": step, "num": num, "k": k, "seq_len": config.seq_len(step),
                 "box_rule": glimpse.box_rule(), "empty_boxes_skipped": True, "refine_steps": refine_steps,
                 "motion_weight": report["motion_weight"],
                 "counting_accuracy": report["counting_accuracy"],
                 "visible_counting_accuracy": report["visible_counting_accuracy"],
                 "detection_count_accuracy": t["detection_count_accuracy"],
                 "MOTA": t["MOTA"], "IDF1": t["IDF1"], "HOTA": t["HOTA"], "IDSW": t["IDSW"],
                 "iou_median_drawn": report["box_iou"]["drawn"].get("q50"),
                 "iou_median_glimpse": report["box_iou"]["glimpse"].get("q50"),
                 "log_px_iwae": report["log_px_iwae"], "eval_seconds": report["seconds"]}
        with open(path, "a") as f:
            f.write(json.dumps(point) + "\n")
        done[(step, num, k) + refined] = point
        print(f"{workdir} step {step} (refine {refine_steps}): counting {point['counting_accuracy']:.4f} "
              f"MOTA {point['MOTA']:.4f} IDF1 {point['IDF1']:.4f} HOTA {point['HOTA']:.4f}", flush=True)
    minutes = run_history.training_minutes(workdir)
    points = [dict(p) for key, p in sorted(done.items()) if key[1:] == (num, k) + refined]
    for p in points:
        p["train_minutes"] = minutes.get(p["step"])
    return points


def _row(point):
    iou = point["iou_median_drawn"]
    minutes = point.get("train_minutes")
    return (f"| {point['step']} | {'n/a' if minutes is None else f'{minutes:.0f}'} | {point['seq_len']} | "
            f"{point['counting_accuracy']:.4f} | "
            f"{point['visible_counting_accuracy']:.4f} | {point['detection_count_accuracy']:.4f} | "
            f"{point['MOTA']:.4f} | {point['IDF1']:.4f} | "
            f"{point['HOTA']:.4f} | {point['IDSW']} | {'n/a' if iou is None else f'{iou:.3f}'} |")


HEADER = ("| step | train minutes | L | counting | visible-count | detections = visible | MOTA | IDF1 | HOTA | "
          "ID switches | median IoU (explained) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (sqair-train --workdir)")
    parser.add_argument("--num", type=int, default=1000, help="held-out test sequences (default 1000)")
    parser.add_argument("--k", type=int, default=5, help="particles (default 5, the training K)")
    parser.add_argument("--data", help="data directory (default: each run's own)")
    parser.add_argument("--every", type=int, default=1, help="only checkpoints at multiples of this many steps")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="score boxes of latents refined by this many steps (sqair-eval --refine-steps; default 0)")
    parser.add_argument("--motion-weight", type=float,
                        help="the refinement's smooth-motion weight (sqair-eval --motion-weight; default: the "
                             "package's)")
    args = parser.parse_args()
    curves = {run: evaluate_run(run, args.num, args.k, args.data, args.every, args.refine_steps, args.motion_weight)
              for run in args.runs}
    for run, points in curves.items():
        print(f"\n{run} ({args.num} test sequences, T = 10, K = {args.k}, refinement steps {args.refine_steps})"
              f"\n\n{HEADER}")
        for point in points:
            print(_row(point))
    common = set.intersection(*(set(p["step"] for p in points) for points in curves.values()))
    if len(curves) > 1 and common:
        step = max(common)
        print(f"\nAt step {step}:\n\n| run |" + HEADER[1:].replace("\n|---", "\n|---|---", 1))
        for run, points in curves.items():
            print(f"| {os.path.basename(os.path.normpath(run))} " + _row(next(p for p in points if p["step"] == step)))


if __name__ == "__main__":
    main()
