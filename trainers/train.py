"""`sqair-train`: train a model (MLP-SQAIR by default) in a run directory, resuming automatically.

    sqair-train --workdir runs/fast --preset fast --data data/mnist
    sqair-train --workdir runs/fast                       # resume with the run's stored config
    sqair-train --workdir runs/vrnn --model mlp-vrnn --preset fast --data data/mnist   # the VRNN baseline
    sqair-train --workdir runs/x --preset paper --data data/mnist --set learning_rate=3e-5 --set model.hidden_size=128

The run directory holds config.json (the resolved config), checkpoints/ and tensorboard/ (view with
`tensorboard --logdir WORKDIR/tensorboard`). A resume with settings that change what the run computes (model,
optimizer, batch, seed, ...) is refused; execution settings (steps, jit, logging cadence, data path) may change.
"""

import argparse
import os
import signal
import sys


def _parser():
    from sqair_tf import models
    from trainers import config as config_lib

    parser = argparse.ArgumentParser(prog="sqair-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True,
                        help="run directory: config, checkpoints and TensorBoard logs; resumed if it exists")
    parser.add_argument("--preset", choices=sorted(config_lib.PRESETS),
                        help="training preset for a new run: paper (the authors' recipe), fast (quickest to learn "
                             "counting on a CPU), tracking (whole 10-frame sequences; trained the shipped model), "
                             "pedestrians (64×64 video crops from `sqair-data from-video`), demo (the main job's fresh run), debug (tests). Default: the run's stored config when "
                             "resuming, else fast")
    parser.add_argument("--model", choices=models.names(),
                        help="which model to train (default: mlp-sqair, or the run's own when resuming): the "
                             "paper's Table 1 models mlp-sqair, conv-sqair, mlp-air (per-frame, no tracking), "
                             "mlp-vrnn, conv-vrnn (no objects); the preset gives the recipe, the model its "
                             "paper-size config (debug-size with --preset debug)")
    parser.add_argument("--data", help="data directory with train and test splits (`sqair-data generate`); "
                                       "required for a new run, optional on resume")
    parser.add_argument("--steps", type=int, help="train until this global step (default: the preset's total_steps)")
    parser.add_argument("--k", type=int, help="particles per sequence K, as --k of sqair-eval and sqair-export "
                                              "(same as --set num_particles=K; default: the preset's, 5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, repeatable: learning_rate=3e-5, batch_size=16, "
                             "jit_compile=true, lr_boundaries=1000,2000, model.hidden_size=128")
    parser.add_argument("--strategy", choices=("auto", "default", "mirrored"), default="auto",
                        help="distribution: mirrored = MirroredStrategy over all GPUs (or CPU); auto = mirrored "
                             "when more than one GPU is visible, else the default strategy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    return parser


def _strategy(name):
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _resolve(args):
    """The config to pass to the Trainer: None means 'resume with the stored one'."""
    import dataclasses

    from sqair_tf import models
    from trainers import config as config_lib

    stored = os.path.join(args.workdir, "config.json")
    overrides = list(args.set)
    if args.data:
        overrides.append(f"data_dir={os.path.abspath(args.data)}")
    if args.steps is not None:
        overrides.append(f"total_steps={args.steps}")
    if args.k is not None:
        overrides.append(f"num_particles={args.k}")
    if os.path.exists(stored):
        with open(stored) as f:
            base = config_lib.TrainConfig.from_json(f.read())
        model = args.model or base.model_name
        if args.preset:
            base = config_lib.preset(args.preset, [f"data_dir={base.data_dir}"], model=model)
        elif model != base.model_name:  # The trainer refuses it, naming both models.
            base = dataclasses.replace(base, model_name=model, model=models.preset(model))
        return base.with_overrides(overrides)
    return config_lib.preset(args.preset or "fast", overrides, model=args.model)


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.steps is not None and args.steps < 1:
        print(f"sqair-train: error: --steps must be ≥ 1, got {args.steps}", file=sys.stderr)
        return 2
    from data_pipelines.errors import DataError
    from trainers import trainer as trainer_lib

    try:
        config = _resolve(args)
        trainer = trainer_lib.Trainer(config, args.workdir, strategy=_strategy(args.strategy),
                                      progress=not args.no_progress)
        cfg = trainer.config
        print(f"training {cfg.total_steps:,} steps in {os.path.abspath(args.workdir)} "
              f"(batch {cfg.batch_size}, K={cfg.num_particles}, {cfg.optimizer} lr {cfg.learning_rate:g}, "
              f"curriculum {cfg.curriculum_start}→{cfg.max_seq_len} frames every {cfg.curriculum_stage_steps:,} "
              f"steps, {trainer.strategy.num_replicas_in_sync} replica(s))", flush=True)
        metrics = trainer.train()
    except (trainer_lib.TrainingError, DataError, ValueError) as e:
        print(f"sqair-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Saved by the trainer; 128 + the signal, as a shell reports it.
        return 128 + getattr(e, "signum", signal.SIGINT)
    step = int(trainer.step.numpy())
    counting = ""
    if trainer.model.has_objects:
        counting = f"counting accuracy {metrics.get('held_out_counting_accuracy', float('nan')):.4f}, "
    print(f"done at step {step:,}: {cfg.model_name} held-out {counting}"
          f"IWAE {metrics.get('held_out_iwae', float('nan')):.1f} nats/seq "
          f"({int(trainer.nonfinite_total.numpy())} non-finite updates skipped)")
    print(f"  checkpoint: {trainer.manager.latest_checkpoint}")
    print(f"  TensorBoard: tensorboard --logdir {os.path.join(os.path.abspath(args.workdir), 'tensorboard')}")
    return 0


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


if __name__ == "__main__":
    run()
