"""`sqair-eval`: measure a trained run the way the paper does (Table 1) and the way trackers are measured.

    sqair-eval --workdir runs/fast --split test --k 1000 --num 1000 --figures
    sqair-eval --pretrained mnist --data DATA --k 5 --num 200 --no-addition    # the shipped model, no training

Writes OUT/<split>-step<S>-k<K>.json and .md (and prints the table); OUT is WORKDIR/eval by default, and
runs/pretrained-<name>/eval for a shipped model (`--out` to choose). It measures:
- log p(x_{1:T}) as the IWAE bound with K particles (the paper: K = 1000), nats per sequence, particles streamed
  in chunks (`--chunk`) so memory stays bounded;
- log p(x|z) and KL(q‖p) per sequence, importance-weighted over the K particles (BUILD.md O6);
- counting accuracy, the paper's definition (inferred count of each frame vs the sequence's digit count) and
  per frame against the number of visible digits; and the best particle's detections (present objects that draw
  something, as the tracking metrics count them) against the visible digits per frame;
- tracking: HOTA, MOTA, MOTP, IDF1, ID switches between the highest-weight particle's boxes (the frame's pixels
  each present object explains, `glimpse.drawn_boxes`) and the visible ground-truth digits, IoU threshold 0.5,
  computed by TrackEval (`evaluation/tracking_metrics.py`); and the IoU distribution of matched pairs for those
  boxes and the glimpse footprints; with `--refine-steps N`, the boxes of latents refined on the frames (BUILD.md
  "Refined boxes"), each sequence's frames together under a smooth-motion term (`--motion-weight`);
- the addition experiment (`evaluation/addition.py`): a 19-way classifier of the sum of visible digits from the
  model's per-frame representation, trained on the training split;
- the number of sequences, K, the seed, the checkpoint and its step, wall time.
With `--figures`: PNG and GIF of reconstructions (held-out sequences that show digits), glimpses, conditional
generation and prior samples in OUT/figures/, also logged to TensorBoard (WORKDIR/tensorboard/eval, or
OUT/tensorboard for a shipped model).
"""

import argparse
import json
import os
import sys
import time

from trainers import flags
from trainers import xla_cache


def _parser():
    parser = argparse.ArgumentParser(prog="sqair-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=xla_cache.HELP)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="run directory written by sqair-train")
    source.add_argument("--pretrained", metavar="NAME",
                        help="a model shipped with the package instead of a run (e.g. mnist; needs --data)")
    parser.add_argument("--data", help="data directory (default: the run's own data_dir; required with "
                                       "--pretrained)")
    parser.add_argument("--out", help="where the report and figures go (default: WORKDIR/eval, or "
                                      "runs/pretrained-NAME/eval with --pretrained)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--k", type=int, default=1000, help="particles per sequence for the IWAE bound "
                                                            "(default 1000, as in the paper)")
    parser.add_argument("--num", type=int, default=1000,
                        help="evaluate the first NUM sequences of the split (default 1000; the paper used all "
                             "10,000, about 10× longer)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--checkpoint", help="checkpoint prefix (default: the run's latest)")
    parser.add_argument("--chunk", type=int, default=50,
                        help="particles per forward pass; memory grows with chunk × batch (default 50)")
    parser.add_argument("--batch", type=int, default=10, help="sequences per forward pass (default 10)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=True,
                        help="XLA-compile the forward pass (default: on; it compiles in ~10-20 s and then runs the "
                             "many-particle evaluation several times faster; --no-jit for a quick look at small K)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU threshold of the tracking metrics (0.5)")
    parser.add_argument("--refine-steps", type=int, default=0, metavar="N",
                        help="before reading boxes and tracks, refine the best particle's object latents by N "
                             "gradient steps on the frames' reconstruction error (BUILD.md \"Refined boxes\"; 50 "
                             "is a good value; default 0: the paper's amortised posterior as it is). The "
                             "likelihood, KL and counts are not affected")
    parser.add_argument("--motion-weight", type=float, default=None, metavar="λ",
                        help="with --refine-steps, the weight (per pixel²) of the refinement's smooth-motion term: "
                             "a sequence's frames are refined together and each object's glimpse centre pays λ for "
                             "its acceleration, so at a crossing it keeps its speed (default: the package's 0.1, "
                             "sqair_tf.refinement.MOTION_WEIGHT; 0: each frame alone)")
    parser.add_argument("--no-addition", action="store_true",
                        help="skip the addition experiment (skipped anyway on video data: no digit labels)")
    parser.add_argument("--observed", type=int, default=3,
                        help="frames the conditional-generation figure observes before imagining the rest "
                             "(default 3; at most the sequence length − 1)")
    parser.add_argument("--addition-train", type=int, default=2000,
                        help="training-split sequences for the addition classifier (default 2000)")
    parser.add_argument("--figures", action="store_true",
                        help="also write PNG/GIF figures (reconstructions, glimpses, generation, prior samples)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def evaluation_args(workdir, **overrides):
    """`sqair-eval --workdir WORKDIR`'s arguments with `overrides` (argument names as attributes) applied.

    One place that knows the defaults, for the tools and benchmarks that call `run_evaluation` in-process; an
    unknown name is refused (a misspelt override would otherwise be silently ignored).
    """
    args = _parser().parse_args(["--workdir", workdir])
    args.out = os.path.join(workdir, "eval")
    args.tensorboard = os.path.join(workdir, "tensorboard", "eval")
    for name, value in overrides.items():
        if not hasattr(args, name):
            raise TypeError(f"sqair-eval has no argument {name!r}")
        setattr(args, name, value)
    return args


def _collect_representations(model, data_dir, split, num, num_particles, seed, progress):
    """Per-frame representations and addition targets of the first `num` sequences of a split."""
    import numpy as np

    from evaluation import addition
    from evaluation import evaluator

    xs, ys = [], []

    def on_batch(batch, _, best):
        representation = np.asarray(model.frame_representation(best))  # [B, T, R]
        xs.append(representation.reshape(-1, representation.shape[-1]))
        ys.append(addition.frame_targets(batch["labels"].numpy(), batch["visible"].numpy()).reshape(-1))

    evaluator.evaluate(model, data_dir, split, num, num_particles, chunk=num_particles, batch_size=50, seed=seed,
                        on_batch=on_batch, progress=progress)
    return np.concatenate(xs), np.concatenate(ys)


def run_evaluation(args):
    """Everything `sqair-eval` computes; returns (report dict, markdown text)."""
    import tensorflow as tf

    from evaluation import addition
    from evaluation import evaluator
    from evaluation import tracking_metrics
    from sqair_tf import refinement
    from trainers import checkpoints

    from data_pipelines import records

    start = time.perf_counter()
    model, config, step = checkpoints.load_model(args.workdir, args.checkpoint)
    motion_weight = refinement.effective_motion_weight(args.refine_steps, args.motion_weight)
    data_dir = args.data or config.data_dir
    progress = not args.no_progress
    sequences = []
    # Video data (`sqair-data from-video`) has proxy ground truth: counts of foreground components, no identities
    # and no digit labels. Counting against it is reported and labelled proxy; tracking and addition are n/a.
    proxy = bool(records.read_manifest(data_dir, args.split).get("proxy_ground_truth", False))

    def on_batch(batch, _, best):
        sequences.extend(evaluator.tracking_sequences(batch, best))

    main = evaluator.evaluate(model, data_dir, args.split, args.num, args.k, chunk=args.chunk,
                               batch_size=args.batch, seed=args.seed, jit_compile=args.jit,
                               on_batch=on_batch if model.has_objects and not proxy else None,
                               progress=progress, refine_steps=args.refine_steps,
                               motion_weight=motion_weight)
    tracking, box_iou = None, None  # A model without objects: every object metric is n/a (paper Table 1).
    if model.has_objects and not proxy:
        tracking = tracking_metrics.evaluate_tracking(sequences, iou_threshold=args.iou)
        # The best particle's detections (present objects that draw something) against the visible digits.
        tracking["detection_count_accuracy"] = tracking_metrics.detection_count_accuracy(sequences)
        # How well the boxes fit: IoUs of matched pairs, for the scored boxes (`drawn_boxes`) and the glimpses.
        box_iou = {name: tracking_metrics.iou_summary(tracking_metrics.matched_ious(sequences, key))
                   for name, key in (("drawn", "pred_boxes"), ("glimpse", "pred_glimpse_boxes"))}
    report = {
        "workdir": os.path.abspath(args.workdir), "model": config.model_name, "checkpoint": args.checkpoint or tf.train.latest_checkpoint(
            os.path.join(args.workdir, "checkpoints")), "step": step, "data_dir": os.path.abspath(data_dir),
        "split": args.split, "num_sequences": main["num_sequences"], "k": args.k, "chunk": min(args.chunk, args.k),
        "seed": args.seed,
        "log_px_iwae": main["iwae"], "elbo": main["elbo"], "log_likelihood": main["log_likelihood"],
        "kl": main["kl"], "counting_accuracy": main.get("counting_accuracy"),
        "visible_counting_accuracy": main.get("visible_counting_accuracy"),
        "num_objects_per_frame": main.get("num_objects"), "ess": main["ess"], "jit": bool(args.jit), "batch": args.batch,
        "particle_seconds": round(main["seconds"], 2), "first_batch_seconds": round(main["first_batch_seconds"], 2),
        "first_batch_sequences": main["first_batch_sequences"], "tracking": tracking, "box_iou": box_iou,
        "has_objects": bool(model.has_objects), "proxy_ground_truth": proxy, "refine_steps": args.refine_steps,
        "motion_weight": motion_weight,
    }
    if not args.no_addition and not proxy:
        k_repr = config.num_particles
        train_x, train_y = _collect_representations(model, data_dir, "train", args.addition_train, k_repr,
                                                    args.seed, progress)
        test_x, test_y = _collect_representations(model, data_dir, args.split, args.num, k_repr, args.seed,
                                                  progress)
        train_acc, test_acc = addition.train_and_evaluate(train_x, train_y, test_x, test_y, seed=args.seed)
        report["addition"] = {"test_accuracy": test_acc, "train_accuracy": train_acc,
                              "train_frames": int(len(train_y)), "test_frames": int(len(test_y)),
                              "representation_particles": k_repr}
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.figures:
        report["figures"] = write_figures(model, config, step, data_dir, args)
    return report, markdown(report)


NOT_APPLICABLE = "n/a"


def markdown(report):
    """The report as a Markdown table (units in the second column); object metrics are n/a without objects."""
    rows = [
        ("log p(x) (IWAE, K={k})".format(k=report["k"]), f"{report['log_px_iwae']:.1f}", "nats / sequence"),
        ("log p(x \\| z) (importance-weighted)", f"{report['log_likelihood']:.1f}", "nats / sequence"),
        ("KL(q ‖ p) (importance-weighted)", f"{report['kl']:.1f}", "nats / sequence"),
        ("ELBO (mean over particles)", f"{report['elbo']:.1f}", "nats / sequence"),
    ]
    if not report.get("has_objects", report["tracking"] is not None):
        rows += [(name, NOT_APPLICABLE, f"{report['model']} has no objects") for name in (
            "counting accuracy (paper: count of the sequence)", "counting accuracy (visible digits per frame)",
            "objects per frame", "HOTA", "MOTA", "IDF1", "ID switches")]
        return _table(report, rows)
    if report.get("proxy_ground_truth"):
        rows += [
            ("counting accuracy (proxy: largest component count of the sequence)",
             f"{report['counting_accuracy']:.4f}", "per frame, against proxy ground truth"),
            ("counting accuracy (proxy: foreground components per frame)",
             f"{report['visible_counting_accuracy']:.4f}", "per frame, against proxy ground truth"),
            ("objects per frame", f"{report['num_objects_per_frame']:.3f}", "importance-weighted"),
        ]
        rows += [(name, NOT_APPLICABLE, "proxy ground truth has no identities") for name in (
            "HOTA", "MOTA", "IDF1", "ID switches")]
        return _table(report, rows)
    t = report["tracking"]
    rows += [
        ("counting accuracy (paper: count of the sequence)", f"{report['counting_accuracy']:.4f}", "per frame"),
        ("counting accuracy (visible digits per frame)", f"{report['visible_counting_accuracy']:.4f}", "per frame"),
        ("objects per frame", f"{report['num_objects_per_frame']:.3f}", "importance-weighted"),
        ("HOTA", f"{t['HOTA']:.4f}", "TrackEval, α averaged"),
        ("HOTA@0.5", f"{t['HOTA@0.5']:.4f}", "TrackEval"),
        (f"MOTA (IoU {t['iou_threshold']})", f"{t['MOTA']:.4f}", "TrackEval CLEAR"),
        (f"MOTP (IoU {t['iou_threshold']})", f"{t['MOTP']:.4f}", "TrackEval CLEAR"),
        (f"IDF1 (IoU {t['iou_threshold']})", f"{t['IDF1']:.4f}", "TrackEval Identity"),
        ("ID switches", f"{t['IDSW']}", f"over {t['num_gt_dets']} ground-truth boxes"),
        ("detections = visible digits", f"{t['detection_count_accuracy']:.4f}",
         "per frame, best particle: present objects that draw something"),
        ("refinement steps before the boxes", f"{report.get('refine_steps', 0)}", "0: the amortised posterior"),
        ("refinement's smooth-motion weight λ", f"{report.get('motion_weight', 0.0):g}",
         "px⁻²; 0: each frame alone"),
    ]
    for name, summary in report["box_iou"].items():
        if summary["num_pairs"]:
            rows.append((f"IoU of matched pairs, {name} boxes", f"{summary['q50']:.3f}",
                         f"median; quartiles {summary['q25']:.3f}–{summary['q75']:.3f}, "
                         f"{summary['at_least_0.5']:.1%} ≥ 0.5, {summary['num_pairs']} pairs"))
        else:
            rows.append((f"IoU of matched pairs, {name} boxes", "n/a", "no box overlaps a ground-truth digit"))
    return _table(report, rows)


def _table(report, rows):
    if "addition" in report:
        a = report["addition"]
        rows.append(("addition accuracy (19-way)", f"{a['test_accuracy']:.4f}",
                     f"{a['test_frames']} frames; train acc {a['train_accuracy']:.4f}"))
    lines = [f"Evaluation of `{report['workdir']}` at step {report['step']} on {report['num_sequences']} "
             f"`{report['split']}` sequences, K={report['k']} (chunks of {report['chunk']}), seed {report['seed']}, "
             f"{report['seconds']} s.", "", "| metric | value | unit |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def sequences_with_digits(data_dir, split, rows, search=64):
    """(frames [rows, T, H, W, C], digit counts [rows]) of the first sequences of `split` that show digits.

    A third of the paper's sequences are empty; figures of empty canvases show nothing of the model, so figures are
    drawn from the first `search` sequences, taking those with the most digits, then the most frames that show one
    (video crops often show a person in a few frames only), ties by order.
    """
    import numpy as np

    from evaluation import evaluator

    ds, _, _ = evaluator.stream_batches(data_dir, split, search, search)
    batch = next(iter(ds))
    count = batch["count"].numpy()  # [B]
    shown = (batch["visible_count"].numpy() > 0).sum(axis=1)  # [B]: frames with an object (video crops: few)
    order = sorted(range(len(count)), key=lambda b: (-min(int(count[b]), 2), -int(shown[b]), b))[:rows]
    order = np.sort(order)
    return batch["frames"].numpy()[order], count[order]


def write_figures(model, config, step, data_dir, args, rows=4, samples=3):
    """PNG + GIF figures under OUT/figures, also logged to TensorBoard; returns their paths."""
    import numpy as np
    import tensorflow as tf

    from data_pipelines import preview
    from evaluation import figures
    from sqair_tf import interface

    out_dir = os.path.join(args.out, "figures")
    os.makedirs(out_dir, exist_ok=True)
    frames = tf.constant(sequences_with_digits(data_dir, args.split, rows)[0])
    k = config.num_particles
    seed = tf.constant([args.seed, 17], tf.int32)
    outputs = model(frames, seed=seed, num_particles=k)
    # Without objects, figures show frames only: the object keys are absent and every box argument is None.
    object_keys = ("boxes", "object_ids", "z_pres") if model.has_objects else ()
    best = {key: v.numpy() for key, v in interface.best_particle(
        {key: outputs[key] for key in ("canvas",) + object_keys + (("glimpses",) if model.has_objects else ())},
        interface.sequence_log_weights(outputs, k)).items()}
    latents = lambda values: [values.get(key) for key in ("boxes", "object_ids", "z_pres")]  # noqa: E731
    paths = {}

    def save(name, image):
        path = os.path.join(out_dir, f"{name}.png")
        image.save(path)
        paths[name] = path
        return image

    images = {"reconstruction": save("reconstruction", figures.reconstruction_figure_of(frames, best, rows=rows))}
    if model.has_objects:
        images["glimpses"] = save("glimpses", figures.glimpse_figure(best["glimpses"], best["object_ids"],
                                                                     best["z_pres"]))
    both = np.concatenate([frames.numpy(), np.clip(best["canvas"], 0, 1)], axis=0)
    twice = lambda x: None if x is None else np.concatenate([x, x], axis=0)  # noqa: E731
    paths["reconstruction_gif"] = figures.save_gif(os.path.join(out_dir, "reconstruction.gif"), both,
                                                   *[twice(x) for x in latents(best)])

    # Conditional generation: observe --observed frames, imagine the rest, several samples per input.
    t_len = int(frames.shape[1])
    observed = min(args.observed, t_len - 1)
    generated = []
    for s in range(samples):
        obs, gen = model.generate(frames[:, :observed], t_len - observed, tf.constant([args.seed, 100 + s]))
        joined = [np.concatenate([np.swapaxes(obs[key].numpy(), 0, 1), np.swapaxes(gen[key].numpy(), 0, 1)], 1)
                  for key in ("canvas",) + object_keys]  # [R, T, ...] each
        generated.append([np.clip(joined[0], 0, 1)] + joined[1:])
    stack = [np.stack([g[i] for g in generated], axis=1) for i in range(len(generated[0]))]  # [R, S, T, ...]
    images["generation"] = save("generation", figures.generation_figure(frames.numpy(), stack[0], observed,
                                                                        *stack[1:]))
    paths["generation_gif"] = figures.save_gif(os.path.join(out_dir, "generation.gif"),
                                               stack[0].reshape((-1,) + stack[0].shape[2:]))

    prior = model.sample(rows, t_len, tf.constant([args.seed, 200]))
    prior = {key: np.swapaxes(prior[key].numpy(), 0, 1) for key in ("canvas",) + object_keys}
    canvas = np.clip(prior["canvas"], 0, 1)
    images["prior_samples"] = save("prior_samples", figures.sample_figure(canvas, *latents(prior)))
    paths["prior_samples_gif"] = figures.save_gif(os.path.join(out_dir, "prior_samples.gif"), canvas,
                                                  *latents(prior))

    writer = tf.summary.create_file_writer(args.tensorboard)
    with writer.as_default(step=step):
        for name, image in images.items():
            tf.summary.image(f"figures/{name}", preview.as_summary_image(image))
    writer.flush()
    return paths


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.pretrained:
        from trainers import pretrained

        try:
            args.workdir, checkpoint = pretrained.locate(args.pretrained)
        except pretrained.PretrainedError as e:
            print(f"sqair-eval: error: {e}", file=sys.stderr)
            return 2
        if args.checkpoint is None:
            args.checkpoint = checkpoint
        if not args.data:
            print("sqair-eval: error: --pretrained needs --data DATA (a directory written by sqair-data generate)",
                  file=sys.stderr)
            return 2
        args.out = args.out or os.path.join("runs", f"pretrained-{args.pretrained}", "eval")
        args.tensorboard = os.path.join(args.out, "tensorboard")
    else:
        args.tensorboard = os.path.join(args.workdir, "tensorboard", "eval")
    args.out = args.out or os.path.join(args.workdir, "eval")
    counts = [(f"--{name.replace('_', '-')}", getattr(args, name), 1)
              for name in ("k", "num", "chunk", "batch", "addition_train", "observed")]
    problem = flags.first_problem(counts + [("--refine-steps", args.refine_steps, 0)], args.motion_weight)
    if problem:
        print(f"sqair-eval: error: {problem}", file=sys.stderr)
        return 2
    if not 0 < args.iou <= 1:
        print("sqair-eval: error: --iou must be in (0, 1]", file=sys.stderr)
        return 2
    from data_pipelines.errors import DataError
    from trainers.checkpoints import CheckpointError

    try:
        report, table = run_evaluation(args)
    except (CheckpointError, DataError, ValueError) as e:
        print(f"sqair-eval: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    os.makedirs(args.out, exist_ok=True)
    refined = f"-refine{args.refine_steps}" if args.refine_steps else ""
    if report["motion_weight"]:
        refined += f"-motion{report['motion_weight']:g}"
    stem = os.path.join(args.out, f"{args.split}-step{report['step']}-k{args.k}{refined}")
    for path, text in ((stem + ".json", json.dumps(report, indent=2)), (stem + ".md", table)):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print(table)
    print(f"wrote {stem}.json and {stem}.md")
    for name, path in report.get("figures", {}).items():
        print(f"  {name}: {path}")
    return 0


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    xla_cache.enable()  # Before TensorFlow starts: it reads TF_XLA_FLAGS once.
    sys.exit(main())


if __name__ == "__main__":
    run()
