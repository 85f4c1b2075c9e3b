"""The paper's Table 1 on this machine: train the five models under one wall-clock budget each, evaluate them on the
same test sequences, and write the table next to the paper's rows.

    python benchmarks/table1.py --data DATA --budget-minutes 30            # ~3 hours here, evaluation included
    python benchmarks/table1.py --data DATA --budget-minutes 2 --k 10 --num 20 --workdir runs/table1_smoke

Every model gets its own run directory WORKDIR/<model> (`sqair-train --model <model> --preset PRESET`), trained
until its training loops have taken --budget-minutes (read back from the run's TensorBoard log, so an interrupted
table resumes where it stopped: run the same command again). Each is then scored by `sqair-eval`'s code on the first
--num test sequences with K = --k particles (the paper: all 10,000 with K = 1000), with the addition experiment, and
tracking metrics for the models with objects. Writes WORKDIR/table1.json, WORKDIR/table1.md (also printed),
WORKDIR/reconstructions.png (one test sequence and every model's reconstruction) and WORKDIR/counting.png (held-out
counting accuracy against training minutes of the models with objects).

All models use the same recipe (--preset, default `tracking`, the CPU recipe of the shipped model): the paper's
training of the baselines is not known, and one recipe for all keeps the comparison about the models.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MODELS = ("conv-sqair", "mlp-sqair", "mlp-air", "conv-vrnn", "mlp-vrnn")  # The paper's row order.
# Paper Table 1 (moving multi-MNIST, 10-frame sequences, nats per sequence; K = 1000 for log p(x)).
PAPER = {
    "conv-sqair": dict(log_px=6784.8, log_px_given_z=6923.8, kl=134.6, counting=0.9974, addition=0.9990),
    "mlp-sqair": dict(log_px=6617.6, log_px_given_z=6786.5, kl=164.5, counting=0.9986, addition=0.9998),
    "mlp-air": dict(log_px=6443.6, log_px_given_z=6830.6, kl=352.6, counting=0.9058, addition=0.8644),
    "conv-vrnn": dict(log_px=6561.9, log_px_given_z=6737.8, kl=270.2, counting=None, addition=0.8536),
    "mlp-vrnn": dict(log_px=5959.3, log_px_given_z=6108.7, kl=218.3, counting=None, addition=0.8059),
}


def _parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data directory with train and test splits (sqair-data)")
    parser.add_argument("--workdir", default="runs/table1", help="where the runs and the table go (runs/table1)")
    parser.add_argument("--budget-minutes", type=float, default=30.0,
                        help="training minutes per model (default 30: the whole table takes about 3 hours here)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--preset", default="tracking", help="training recipe for every model (default tracking)")
    parser.add_argument("--k", type=int, default=1000, help="particles per sequence for the evaluation (1000)")
    parser.add_argument("--num", type=int, default=100, help="test sequences evaluated (default 100)")
    parser.add_argument("--chunk", type=int, default=50, help="particles per forward pass (default 50)")
    parser.add_argument("--addition-train", type=int, default=1000,
                        help="training sequences for the addition classifier (default 1000; 0 skips it)")
    parser.add_argument("--seed", type=int, default=0, help="training and sampling seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def trained_minutes(workdir):
    """Minutes of training loops the run has had (0 for a new run)."""
    from trainers import run_history

    if not os.path.isdir(os.path.join(workdir, "tensorboard", "train")):
        return 0.0, 0
    minutes = run_history.training_minutes(workdir)
    if not minutes:
        return 0.0, 0
    last = max(minutes)
    return minutes[last], last


def train(name, args, workdir):
    """Trains (or resumes) model `name` until its loops have taken the budget; returns (minutes, steps)."""
    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    import tensorflow as tf

    spent, _ = trained_minutes(workdir)
    remaining = args.budget_minutes * 60 - spent * 60
    checkpointed = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) is not None
    # Less than a loop's worth is not worth a compilation, unless a crash left the run without a checkpoint.
    if remaining > 20 or not checkpointed:
        remaining = max(remaining, 1.0)
        config = None
        if not os.path.exists(os.path.join(workdir, "config.json")):
            config = config_lib.preset(args.preset, [f"data_dir={os.path.abspath(args.data)}", f"seed={args.seed}",
                                                     "total_steps=1000000"], model=name)
        print(f"\n== {name}: training for {remaining / 60:.1f} more minutes in {workdir}", flush=True)
        trainer_lib.Trainer(config, workdir, progress=not args.no_progress).train(max_seconds=remaining)
    return trained_minutes(workdir)


def evaluate(name, args, workdir):
    """`sqair-eval` on the first --num test sequences; the report dict (cached in WORKDIR/eval by step and K)."""
    from evaluation import cli as eval_cli
    from trainers import checkpoints

    out = os.path.join(workdir, "eval")
    ns = eval_cli.evaluation_args(workdir, data=args.data, k=args.k, num=args.num, chunk=min(args.chunk, args.k),
                                  seed=args.seed, no_addition=args.addition_train == 0,
                                  addition_train=args.addition_train, no_progress=args.no_progress, out=out)
    _, _, step = checkpoints.load_model(workdir)
    cached = os.path.join(out, f"table1-step{step}-k{args.k}-num{args.num}.json")
    if os.path.exists(cached):
        with open(cached) as f:
            return json.load(f)
    print(f"\n== {name}: evaluating step {step} on {args.num} test sequences with K={args.k}", flush=True)
    report, _ = eval_cli.run_evaluation(ns)
    os.makedirs(out, exist_ok=True)
    with open(cached + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(cached + ".tmp", cached)
    return report


def row(name, report, minutes, steps):
    tracking = report["tracking"] or {}
    return {
        "model": name, "steps": steps, "train_minutes": round(minutes, 1), "k": report["k"],
        "num_sequences": report["num_sequences"], "log_px": report["log_px_iwae"],
        "log_px_given_z": report["log_likelihood"], "kl": report["kl"], "counting": report["counting_accuracy"],
        "addition": (report.get("addition") or {}).get("test_accuracy"), "MOTA": tracking.get("MOTA"),
        "IDF1": tracking.get("IDF1"), "HOTA": tracking.get("HOTA"),
    }


def markdown(rows, args):
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [f"Table 1 on this machine: {args.budget_minutes:g} training minutes per model (`{args.preset}` recipe, "
             f"seed {args.seed}), evaluated on the first {args.num} test sequences with K = {args.k}; nats per "
             f"10-frame sequence. Paper rows: all 10,000 sequences, K = 1000, >10^6 training steps.", "",
             "| model | source | steps | train min | log p(x) | log p(x\\|z) | KL | counting | addition | MOTA | IDF1 "
             "| HOTA |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = PAPER[r["model"]]
        lines.append(f"| {r['model']} | ours | {r['steps']:,} | {r['train_minutes']:.1f} | {r['log_px']:.1f} | "
                     f"{r['log_px_given_z']:.1f} | {r['kl']:.1f} | {fmt(r['counting'], '.4f')} | "
                     f"{fmt(r['addition'], '.4f')} | {fmt(r['MOTA'], '.4f')} | {fmt(r['IDF1'], '.4f')} | "
                     f"{fmt(r['HOTA'], '.4f')} |")
        lines.append(f"| {r['model']} | paper | >10^6 | | {p['log_px']:.1f} | {p['log_px_given_z']:.1f} | "
                     f"{p['kl']:.1f} | {fmt(p['counting'], '.4f')} | {fmt(p['addition'], '.4f')} | | | |")
    return "\n".join(lines) + "\n"


def reconstruction_figure(names, args, path):
    """One test sequence that shows digits, then each model's best-particle reconstruction (boxes for objects)."""
    import numpy as np
    import tensorflow as tf

    from data_pipelines import preview
    from evaluation import cli as eval_cli
    from sqair_tf import interface
    from trainers import checkpoints

    frames = eval_cli.sequences_with_digits(args.data, "test", 1)[0]  # [1, T, H, W, 1]
    rows, boxes, ids, presence, titles = [frames[0]], [None], [None], [None], ["input"]
    for name in names:
        model, config, _ = checkpoints.load_model(os.path.join(args.workdir, name))
        k = config.num_particles
        out = model(tf.constant(frames), seed=tf.constant([args.seed, 7]), num_particles=k)
        keys = ("canvas", "boxes", "object_ids", "z_pres") if model.has_objects else ("canvas",)
        best = {key: v.numpy()[0] for key, v in interface.best_particle(
            {key: out[key] for key in keys}, interface.sequence_log_weights(out, k)).items()}
        rows.append(np.clip(best["canvas"], 0, 1))
        boxes.append(best.get("boxes"))
        ids.append(best.get("object_ids"))
        presence.append(best.get("z_pres"))
        titles.append(name)
    n_slots = max(b.shape[1] for b in boxes if b is not None) if any(b is not None for b in boxes) else 1
    t_len = frames.shape[1]
    fill = lambda x, shape, value: np.full(shape, value, np.float32) if x is None else x  # noqa: E731
    image = preview.sequence_grid(
        np.stack(rows), np.stack([fill(b, (t_len, n_slots, 4), 0) for b in boxes]),
        np.stack([fill(i, (t_len, n_slots), -1).astype(np.int32) for i in ids]),
        np.stack([fill(p, (t_len, n_slots), 0) for p in presence]), row_titles=titles, scale=2)
    image.save(path)
    return path


def counting_figure(names, args, path):
    """Held-out counting accuracy (the trainer's periodic evaluation) against training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainers import run_history

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        workdir = os.path.join(args.workdir, name)
        minutes = run_history.training_minutes(workdir)
        accuracy = run_history.scalars(workdir, "eval", "held_out/counting_accuracy")
        points = {minutes[step]: value for step, value in accuracy.items() if step in minutes}
        if points:
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker=".", label=name)
    ax.set_xlabel("training minutes (this machine)")
    ax.set_ylabel("held-out counting accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        print(f"table1: error: unknown models {unknown}; choose from {','.join(MODELS)}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.data):
        print(f"table1: error: no data directory {args.data}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.time()
    rows = []
    for name in names:
        workdir = os.path.join(args.workdir, name)
        minutes, steps = train(name, args, workdir)
        rows.append(row(name, evaluate(name, args, workdir), minutes, steps))
    table = markdown(rows, args)
    object_models = [n for n in names if not n.endswith("vrnn")]
    figures = {"reconstructions": reconstruction_figure(names, args, os.path.join(args.workdir, "reconstructions.png")),
               "counting": counting_figure(object_models, args, os.path.join(args.workdir, "counting.png"))}
    result = {"rows": rows, "paper": PAPER, "budget_minutes": args.budget_minutes, "preset": args.preset,
              "k": args.k, "num": args.num, "seed": args.seed, "figures": figures,
              "seconds": round(time.time() - start, 1)}
    for path, text in ((os.path.join(args.workdir, "table1.json"), json.dumps(result, indent=2)),
                       (os.path.join(args.workdir, "table1.md"), table)):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print(table)
    print(f"wrote {args.workdir}/table1.md, table1.json, reconstructions.png, counting.png "
          f"({result['seconds'] / 60:.1f} minutes this invocation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
