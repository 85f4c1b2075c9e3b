"""`sqair-demo`: the project's main job, end to end on the embedded digits, in one run directory.

1. data: a small moving multi-MNIST train and test set from the embedded 10k MNIST digits, and a preview of
   held-out sequences with their ground-truth boxes;
2. training: the `demo` training preset (`trainers/config.py`) in RUNDIR/train (checkpoints, TensorBoard);
3. held-out counting accuracy (paper definition) of the trained model on the test sequences;
4. a PNG of held-out inputs over their reconstructions with inferred boxes coloured by object id;
5. a SavedModel export for TF Serving (RUNDIR/export/<version>) and `track` run from it on a few held-out
   sequences, printing the inferred counts and object ids.
Re-running resumes: existing data are kept and training continues from its checkpoint.

    sqair-demo --rundir runs/demo
"""

import argparse
import os
import sys
import time

from data_pipelines.errors import DataError


def _parser():
    parser = argparse.ArgumentParser(prog="sqair-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rundir", default="runs/demo", help="where everything is written (default: runs/demo)")
    parser.add_argument("--num-train", type=int, default=2000, help="training sequences to generate (default 2000)")
    parser.add_argument("--num-test", type=int, default=500, help="held-out sequences to generate (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--preset", default="paper", help="data preset: paper or hard (default: paper)")
    parser.add_argument("--train-preset", default="demo",
                        help="training preset (default: demo, a few minutes on 2 cores; see sqair-train --help)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="training config override, repeatable (e.g. total_steps=100)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from tqdm import tqdm

    from data_pipelines import cli as data_cli
    from data_pipelines import generate, moving_mnist, records
    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    start = time.time()
    data_dir = os.path.join(args.rundir, "data")
    train_dir = os.path.join(args.rundir, "train")
    try:
        config = moving_mnist.preset(args.preset)
        for split, num in (("train", args.num_train), ("test", args.num_test)):
            if _have_split(records, data_dir, split, num, args.seed, config):
                print(f"data: keeping the existing {split} split in {data_dir}")
                continue
            with tqdm(total=num, unit="seq", desc=f"data: {split}", file=sys.stderr, disable=args.no_progress) as bar:
                manifest = generate.generate_split(data_dir, split, num, args.seed, config, progress=bar.update)
            print(f"digits: {manifest['digits']}")
        preview = os.path.join(args.rundir, "data_preview.png")
        code = data_cli.main(["preview", data_dir, "--split", "test", "--num", "8", "--out", preview])
        if code:
            return code

        train_config = config_lib.preset(args.train_preset, [f"data_dir={os.path.abspath(data_dir)}",
                                                             f"seed={args.seed}"] + args.set)
        trainer = trainer_lib.Trainer(train_config, train_dir, progress=not args.no_progress)
        cfg = trainer.config
        print(f"training: preset {args.train_preset}, {cfg.total_steps} steps of {cfg.batch_size} sequences × "
              f"{cfg.num_particles} particles, {cfg.seq_len(0, trainer.data_len)} frames", flush=True)
        trainer.train()
        result, figure = _evaluate(trainer, data_dir, args)
        figure_path = os.path.join(args.rundir, "reconstructions.png")
        figure.save(figure_path)
        export_dir, tracked = _export_and_track(trainer, train_dir, os.path.join(args.rundir, "export"), data_dir)
    except (DataError, trainer_lib.TrainingError, ValueError) as e:
        print(f"sqair-demo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sqair-demo: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    root = os.path.abspath(args.rundir)
    print(f"\nheld-out counting accuracy (paper definition, {result['num_sequences']} test sequences of "
          f"{trainer.data_len} frames, K={cfg.num_particles}): {result['counting_accuracy']:.4f}; per-frame "
          f"visible-digit count accuracy {result['visible_counting_accuracy']:.4f}; IWAE {result['iwae']:.1f} "
          f"nats/sequence")
    print(f"\n`track` from the SavedModel on {tracked['counts'].shape[0]} held-out sequences (count per frame; ids of "
          f"the present objects per frame):")
    for b in range(tracked["counts"].shape[0]):
        ids = [[int(i) for i, p in zip(frame_ids, frame_pres) if p > 0]
               for frame_ids, frame_pres in zip(tracked["object_ids"][b], tracked["presence"][b])]
        print(f"  sequence {b}: true count {int(tracked['true_count'][b])}, counts {tracked['counts'][b].tolist()}, "
              f"ids {ids}")
    print(f"main job done in {time.time() - start:.0f} s; everything is under {root}:")
    print(f"  data (TFRecords + manifests): {os.path.abspath(data_dir)}")
    print(f"  preview of held-out sequences with ground-truth boxes: {os.path.abspath(preview)}")
    print(f"  checkpoints and config: {os.path.abspath(train_dir)}")
    print(f"  held-out inputs over reconstructions, boxes coloured by object id: {os.path.abspath(figure_path)}")
    print(f"  TensorBoard: tensorboard --logdir {os.path.join(os.path.abspath(train_dir), 'tensorboard')}")
    print(f"  SavedModel for TF Serving (track / generate / sample): {os.path.abspath(export_dir)}")
    return 0


def _export_and_track(trainer, train_dir, export_base, data_dir, num=3):
    """Exports the trained model (reusing this step's export on a re-run) and runs `track` from the SavedModel."""
    from data_pipelines import dataset
    from trainers import export

    step = int(trainer.step.numpy())
    path = os.path.join(export_base, str(step))
    if not os.path.isdir(path):
        path = export.export_model(train_dir, export_base, num_particles=trainer.config.num_particles)
    batch = next(iter(dataset.build_dataset(dataset.DataConfig(data_dir=data_dir, split="test", global_batch_size=num,
                                                               shuffle=False, repeat=False))[0]))
    tracked = export.track_saved_model(path, batch["frames"].numpy())
    tracked["true_count"] = batch["count"].numpy()
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


def _evaluate(trainer, data_dir, args):
    """Held-out metrics over the whole test split and the reconstruction figure of its first sequences."""
    import tensorflow as tf

    from sqair_tf import figures
    from trainers import evaluation, trainer as trainer_lib

    k = trainer.config.num_particles
    result = evaluation.evaluate_split(trainer.model, data_dir, "test", args.num_test, k, seed=args.seed,
                                       progress=not args.no_progress)
    from data_pipelines import dataset

    batch = next(iter(dataset.build_dataset(dataset.DataConfig(data_dir=data_dir, split="test", global_batch_size=6,
                                                               shuffle=False, repeat=False))[0]))
    _, best = trainer_lib.evaluate_batch(trainer.model, batch["frames"][:6], batch["count"][:6],
                                         tf.constant([args.seed, 1]), k)
    return result, figures.reconstruction_figure_of(batch["frames"][:6], best, rows=6, scale=3)


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


if __name__ == "__main__":
    run()
