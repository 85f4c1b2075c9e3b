"""`sqair-demo`: the project's main job, end to end on the embedded digits, in one run directory, in minutes.

1. data: a small moving multi-MNIST training set and a held-out test set (10 frames, other digits, another seed)
   from the 10,000 MNIST digits shipped with the package, and a preview of held-out sequences with their
   ground-truth boxes;
2. the pretrained model shipped with the package (`--pretrained`, BUILD.md "Pretrained models"): its held-out
   counting accuracy, MOTA, IDF1 and HOTA (boxes of latents refined on the frames, `--refine-steps`, under a
   smooth-motion term, `--motion-weight`); figures of
   held-out sequences with digits (inputs over reconstructions with id-coloured boxes, PNG and animated GIF; a
   conditional-generation strip); a SavedModel export and its `track` endpoint called on held-out sequences;
3. a short run from scratch (the `demo` training preset) for whatever remains of the `--minutes` budget, so the
   pipeline is seen to learn: loss and accuracy in the progress bar and TensorBoard, checkpoints;
4. the pretrained and the fresh model side by side on the same held-out sequences, and what each number means.

The budget is wall-clock, not steps, because machines of one kind differ 3-4x in speed: everything but the fresh
run's training is done first, and training gets what is left (at least `--min-train-seconds`). Re-running keeps
the data and resumes the fresh run from its checkpoint.

    sqair-demo --workdir runs/demo
"""

import argparse
import os
import sys
import time

from data_pipelines.errors import DataError
from trainers import flags
from trainers import xla_cache

# What the numbers mean, printed under the side-by-side table.
MEANINGS = (
    ("counting", "fraction of frames whose number of inferred objects equals the sequence's number of digits "
                 "(the paper's counting accuracy)"),
    ("visible", "the same against the digits visible in that frame (digits can leave and re-enter the canvas)"),
    ("shown", "the best particle's objects that draw something in a frame, against the digits visible in it (an "
              "object kept while its digit is out of view does not count, as the tracking metrics count it)"),
    ("MOTA", "1 - (missed + false + identity-switched boxes) / ground-truth boxes, a box matching at IoU ≥ 0.5; "
             "1 is perfect, it can be negative"),
    ("IDF1", "how much of each digit's track is covered by one inferred identity (F1 of identity matches)"),
    ("HOTA", "detection and association accuracy combined over IoU thresholds 0.05-0.95"),
)


def _parser():
    parser = argparse.ArgumentParser(prog="sqair-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=xla_cache.HELP)
    parser.add_argument("--workdir", default="runs/demo",
                        help="the demo's directory: data, runs, figures, export (default: runs/demo)")
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="wall-clock budget of the whole demo; the fresh run trains for what is left after "
                             "everything else (default 4.0: the fresh model's evaluation and the end of the last "
                             "training loop take about 30 s more, so the whole demo stays under 5 minutes; BUILD.md)")
    parser.add_argument("--min-train-seconds", type=float, default=30.0,
                        help="the fresh run trains at least this long, even past the budget (default 30)")
    parser.add_argument("--pretrained", default="mnist", help="shipped model to show (default: mnist)")
    parser.add_argument("--num-train", type=int, default=2000, help="training sequences to generate (default 2000)")
    parser.add_argument("--num-test", type=int, default=200,
                        help="held-out sequences to generate and evaluate both models on (default 200)")
    parser.add_argument("--k", type=int, default=5, help="particles per held-out sequence (default 5)")
    parser.add_argument("--refine-steps", type=int,
                        help="both models' boxes (evaluation and the SavedModel's `track`) come from latents "
                             "refined by this many gradient steps on the frames (sqair-eval --refine-steps; "
                             "default: the package's recommended 50, sqair_tf.refinement.STEPS; 0: the amortised "
                             "posterior as it is)")
    parser.add_argument("--motion-weight", type=float, metavar="λ",
                        help="the refinement's smooth-motion weight per pixel² (sqair-eval --motion-weight; "
                             "default: the package's 0.1, sqair_tf.refinement.MOTION_WEIGHT; 0: each frame alone)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of everything random; the test split uses SEED + 1 (default 0)")
    parser.add_argument("--data-preset", default="paper",
                        help="moving-MNIST generator preset, as in sqair-data: paper or hard (default: paper)")
    parser.add_argument("--preset", default="demo",
                        help="training preset of the fresh run (default: demo; see sqair-train --help)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="fresh-run config override, repeatable (e.g. total_steps=100)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=True,
                        help="XLA-compile the held-out evaluations (default: on; faster beyond a few dozen "
                             "sequences)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    counts = [(f"--{name.replace('_', '-')}", getattr(args, name), 1) for name in ("num_train", "num_test", "k")]
    if args.refine_steps is not None:
        counts.append(("--refine-steps", args.refine_steps, 0))
    problem = flags.first_problem(counts, args.motion_weight)
    if problem:
        print(f"sqair-demo: error: {problem}", file=sys.stderr)
        return 2
    from sqair_tf import refinement
    from trainers import checkpoints, pretrained
    from trainers import trainer as trainer_lib

    args.refine_steps = refinement.STEPS if args.refine_steps is None else args.refine_steps
    args.motion_weight = refinement.effective_motion_weight(args.refine_steps, args.motion_weight)

    start = time.monotonic()
    data_dir = os.path.join(args.workdir, "data")
    train_dir = os.path.join(args.workdir, "train")
    shown_dir = os.path.join(args.workdir, f"pretrained-{args.pretrained}")
    try:
        preview = _data(args, data_dir)
        shipped_dir, shipped_weights = pretrained.locate(args.pretrained)
        print(f"\n[2/4] the pretrained model `{args.pretrained}` shipped with the package "
              f"({_trained_for(pretrained.provenance(args.pretrained), checkpoints.load_config(shipped_dir))})",
              flush=True)
        shipped, _ = _evaluate(args, shipped_dir, shipped_weights, data_dir, shown_dir, figures=True)
        print(f"held-out counting accuracy {shipped['counting_accuracy']:.3f}, MOTA {shipped['tracking']['MOTA']:.3f}"
              f" ({shipped['seconds']:.0f} s with figures); exporting it as a SavedModel", flush=True)
        export_dir, tracked = _export_and_track(shipped_dir, shipped_weights, os.path.join(args.workdir, "export"),
                                                data_dir, shipped["step"], args.refine_steps,
                                                args.motion_weight)

        budget = args.minutes * 60 - (time.monotonic() - start) - shipped["seconds"]  # Leave time to evaluate it.
        seconds = max(budget, args.min_train_seconds)
        train_start = time.monotonic()
        fresh_trainer = _train(args, data_dir, train_dir, seconds)
        trained_seconds = time.monotonic() - train_start
        print(f"\n[4/4] the fresh run on the same {args.num_test} held-out sequences", flush=True)
        fresh, _ = _evaluate(args, train_dir, None, data_dir, os.path.join(train_dir, "eval"), figures=False)
        shipped_config = checkpoints.load_config(shipped_dir)
    except (DataError, trainer_lib.TrainingError, checkpoints.CheckpointError, pretrained.PretrainedError,
            ValueError) as e:
        print(f"sqair-demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sqair-demo: interrupted; run the same command again to continue", file=sys.stderr)
        return 130

    cfg = fresh_trainer.config
    print(f"\nheld-out results: {args.num_test} test sequences of 10 frames, K={args.k}, the best particle's tracks")
    print(f"  {'model':44s} {'steps':>7s} {'counting':>9s} {'visible':>8s} {'shown':>6s} {'MOTA':>7s} {'IDF1':>6s} "
          f"{'HOTA':>6s}")
    for label, report in ((f"pretrained `{args.pretrained}` (shipped)", shipped),
                          (f"fresh run (`{args.preset}` preset, {trained_seconds:.0f} s)", fresh)):
        t = report["tracking"]
        print(f"  {label:44s} {report['step']:7d} {report['counting_accuracy']:9.3f} "
              f"{report['visible_counting_accuracy']:8.3f} {t['detection_count_accuracy']:6.3f} {t['MOTA']:7.3f} "
              f"{t['IDF1']:6.3f} {t['HOTA']:6.3f}")
    for name, meaning in MEANINGS:
        print(f"  {name}: {meaning}")
    if args.refine_steps:
        motion = (f", a sequence's frames together with smooth-motion weight {args.motion_weight:g}"
                  if args.motion_weight else ", each frame alone")
        print(f"  Boxes: each object's latents refined by {args.refine_steps} gradient steps on the frames{motion}, "
              f"before its box is read (the model's own inference alone: --refine-steps 0).")
    print(f"  The fresh run trained on {cfg.seq_len(0, fresh_trainer.data_len)}-frame sequences for "
          f"{fresh['step']} steps; the pretrained one for {shipped['step']:,} steps, on up to "
          f"{shipped_config.seq_len(shipped['step'])}-frame sequences.")

    print(f"\n`track` from the SavedModel on {tracked['counts'].shape[0]} held-out sequences (count per frame; ids of "
          f"the present objects per frame):")
    for b in range(tracked["counts"].shape[0]):
        ids = [[int(i) for i, p in zip(frame_ids, frame_pres) if p > 0]
               for frame_ids, frame_pres in zip(tracked["object_ids"][b], tracked["presence"][b])]
        print(f"  sequence {b}: true count {int(tracked['true_count'][b])}, counts {tracked['counts'][b].tolist()}, "
              f"ids {ids}")
    path = os.path.abspath
    figures = {name: path(value) for name, value in shipped["figures"].items()}
    print(f"\nmain job done in {time.monotonic() - start:.0f} s; everything is under {path(args.workdir)}:")
    print(f"  data (TFRecords + manifests): {path(data_dir)}")
    print(f"  preview of held-out sequences with ground-truth boxes: {path(preview)}")
    print(f"  pretrained model, held-out inputs over reconstructions (boxes coloured by object id): "
          f"{figures['reconstruction']}")
    print(f"    the same, animated: {figures['reconstruction_gif']}")
    print(f"    conditional generation (3 frames observed, the rest imagined, 3 samples each): "
          f"{figures['generation']} (animated: {figures['generation_gif']})")
    print(f"    its evaluation report: {path(shown_dir)}")
    print(f"  fresh run, checkpoints and config: {path(train_dir)}; report: {path(os.path.join(train_dir, 'eval'))}")
    print(f"  TensorBoard: tensorboard --logdir {path(os.path.join(train_dir, 'tensorboard'))}")
    print(f"  SavedModel of the pretrained model for TF Serving (track / generate / sample): {path(export_dir)}")
    return 0


def _data(args, data_dir):
    """Generates (or keeps) the train and test splits and writes the preview; returns the preview's path."""
    from tqdm import tqdm

    from data_pipelines import cli as data_cli
    from data_pipelines import generate, moving_mnist, records

    print("[1/4] data", flush=True)
    config = moving_mnist.preset(args.data_preset)
    for split, num, seed in (("train", args.num_train, args.seed), ("test", args.num_test, args.seed + 1)):
        if _have_split(records, data_dir, split, num, seed, config):
            print(f"data: keeping the existing {split} split in {data_dir}")
            continue
        with tqdm(total=num, unit="seq", desc=f"data: {split}", file=sys.stderr, disable=args.no_progress) as bar:
            manifest = generate.generate_split(data_dir, split, num, seed, config, progress=bar.update)
        print(f"{split}: {num} sequences; digits: {manifest['digits']}")
    preview = os.path.join(args.workdir, "data_preview.png")
    if data_cli.main(["preview", data_dir, "--split", "test", "--num", "8", "--out", preview]):
        raise DataError(f"could not write the preview of {data_dir}")
    return preview


def _trained_for(record, config):
    """What trained a shipped model, in a line: its steps, its preset (the one its config is closest to), seed and
    training minutes (`wall_clock_minutes`, the training loops' own on a machine shared with other runs: more than
    an idle machine needs, benchmarks/RESULTS.md)."""
    from trainers import config as config_lib

    training = record.get("training", {})
    minutes = training.get("wall_clock_minutes")
    preset, _ = config_lib.as_preset_and_overrides(config)
    return (f"{record['step']:,} steps of the `{preset}` preset, seed {record['seed']}"
            + (f", {minutes:.0f} minutes of training on 2 CPU cores shared with other work, an upper bound"
               if minutes else ""))


def _evaluate(args, workdir, checkpoint, data_dir, out, figures):
    """`sqair-eval` of a run or shipped model on the demo's test split; returns (report, markdown), both written."""
    import json

    from evaluation import cli as eval_cli

    ns = eval_cli.evaluation_args(workdir, checkpoint=checkpoint, data=data_dir, k=args.k, num=args.num_test,
                                  chunk=args.k, batch=50, seed=args.seed, jit=args.jit, no_addition=True,
                                  refine_steps=args.refine_steps, motion_weight=args.motion_weight,
                                  figures=figures, no_progress=args.no_progress, out=out,
                                  tensorboard=os.path.join(out, "tensorboard"))
    report, table = eval_cli.run_evaluation(ns)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(table)
    return report, table


def _train(args, data_dir, train_dir, seconds):
    """Trains (or resumes) the fresh run for `seconds` of wall-clock; returns its Trainer."""
    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    train_config = config_lib.preset(args.preset, [f"data_dir={os.path.abspath(data_dir)}",
                                                         f"seed={args.seed}"] + args.set)
    trainer = trainer_lib.Trainer(train_config, train_dir, progress=not args.no_progress)
    cfg = trainer.config
    print(f"\n[3/4] a fresh run from scratch: preset {args.preset}, {cfg.batch_size} sequences × "
          f"{cfg.num_particles} particles of {cfg.seq_len(0, trainer.data_len)} frames per step, for "
          f"{seconds:.0f} s (the rest of the --minutes budget) or {cfg.total_steps} steps", flush=True)
    trainer.train(max_seconds=seconds)
    return trainer


def _export_and_track(workdir, checkpoint, export_base, data_dir, step, refine_steps, motion_weight, num=3):
    """Exports the model with `refine_steps` and `motion_weight` (reusing an export of this step with the same
    refinement on a re-run) and runs `track` from the SavedModel on the first `num` held-out sequences that show
    digits."""
    import json

    from evaluation import cli as eval_cli
    from serving import export

    path = os.path.join(export_base, str(step))
    try:
        with open(os.path.join(path, "assets.extra", "sqair_export.json")) as f:
            info = json.load(f)
        reuse = (info["refine_steps"], info.get("motion_weight", 0.0)) == (refine_steps, motion_weight)
    except (OSError, ValueError, KeyError):
        reuse = False
    if not reuse:  # A new version next to any other (`export.choose_version`): nothing is overwritten.
        path = export.export_model(workdir, export_base, checkpoint=checkpoint, refine_steps=refine_steps,
                                   motion_weight=motion_weight)
    frames, counts = eval_cli.sequences_with_digits(data_dir, "test", num)
    tracked = export.track_saved_model(path, frames)
    tracked["true_count"] = counts
    return path, tracked


def _have_split(records, data_dir, split, num, seed, config):
    """True when `data_dir` already holds a complete split generated with these settings."""
    import dataclasses
    import json

    try:
        manifest = records.read_manifest(data_dir, split)
    except DataError:  # Missing or incomplete: generate it.
        return False
    generator = json.loads(json.dumps(dataclasses.asdict(config)))
    return (manifest.get("num_sequences"), manifest.get("seed"), manifest.get("generator")) == (num, seed, generator)


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    xla_cache.enable()  # Before TensorFlow starts: it reads TF_XLA_FLAGS once.
    sys.exit(main())


if __name__ == "__main__":
    run()
