"""`sqair-train`: train a model (MLP-SQAIR by default) in a run directory, resuming automatically.

    sqair-train --workdir runs/fast --preset fast --data data/mnist
    sqair-train --workdir runs/fast                       # resume with the run's stored config
    sqair-train --workdir runs/vrnn --model mlp-vrnn --preset fast --data data/mnist   # the VRNN baseline
    sqair-train --workdir runs/x --preset paper --data data/mnist --set learning_rate=3e-5 --set model.hidden_size=128
    sqair-train --workdir runs/ft --init-from mnist --data data/mnist --steps 30000   # fine-tune the shipped model

The run directory holds config.json (the resolved config), checkpoints/ and tensorboard/ (view with
`tensorboard --logdir WORKDIR/tensorboard`). A resume with settings that change what the run computes (model,
optimizer, batch, seed, ...) is refused; execution settings (steps, jit, logging cadence, data path) may change.

On several machines, run the same command on every machine with its own TF_CONFIG (the cluster's addresses and
this machine's task; `--strategy auto` then trains with MultiWorkerMirroredStrategy), and a run directory on a
filesystem they share; `sqair-train-cluster --workers N -- ARGS` tries it on one machine (README "Several
machines").
"""

import argparse
import os
import signal
import sys

from trainers import xla_cache


def _parser():
    from sqair_tf import models
    from trainers import config as config_lib
    from trainers import multi_worker

    parser = argparse.ArgumentParser(prog="sqair-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=xla_cache.HELP)
    parser.add_argument("--workdir", required=True,
                        help="run directory: config, checkpoints and TensorBoard logs; resumed if it exists")
    parser.add_argument("--preset", choices=sorted(config_lib.PRESETS),
                        help="training preset for a new run: paper (the authors' recipe), fast (quickest to learn "
                             "counting on a CPU), tracking (whole 10-frame sequences), "
                             "tracking_clipped (tracking with the gradient clipped and the rate held higher; "
                             "learns to track in fewer steps), tracking_penalised (tracking_clipped with a cost of "
                             "30 nats per discovered object from step 2,000: fewer identity switches; trained the "
                             "shipped model), tracking_offcanvas (tracking_penalised with glimpses free to follow "
                             "a digit out of the frame: tracks better at 5,000 steps, about as well at 10,000, "
                             "worse at 15,000 on one seed), pedestrians (64×64 "
                             "video crops from `sqair-data from-video`), demo (the main job's fresh run), debug "
                             "(tests). Default: the run's stored config when resuming, else fast")
    parser.add_argument("--model", choices=models.names(),
                        help="which model to train (default: mlp-sqair, or the run's own when resuming): the "
                             "paper's Table 1 models mlp-sqair, conv-sqair, mlp-air (per-frame, no tracking), "
                             "mlp-vrnn, conv-vrnn (no objects); the preset gives the recipe, the model its "
                             "paper-size config (debug-size with --preset debug)")
    parser.add_argument("--data", help="data directory with train and test splits (`sqair-data generate`); "
                                       "required for a new run, optional on resume")
    parser.add_argument("--steps", type=int, help="train until this global step (default: the preset's total_steps)")
    parser.add_argument("--init-from", metavar="SOURCE",
                        help="start a new run from trained weights instead of the seed's: a run directory (its "
                             "latest checkpoint), a checkpoint prefix, or a shipped model's name (mnist, "
                             "pedestrians). The run continues from that checkpoint's step (learning-rate schedule, "
                             "curriculum) with a fresh optimizer, so --steps must be past it; without --preset or "
                             "--model it takes the source's config (then --set changes it)")
    parser.add_argument("--k", type=int, help="particles per sequence K, as --k of sqair-eval and sqair-export "
                                              "(same as --set num_particles=K; default: the preset's, 5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, repeatable: learning_rate=3e-5, batch_size=16, "
                             "jit_compile=true, lr_boundaries=1000,2000, model.hidden_size=128")
    parser.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi_worker"), default="auto",
                        help="distribution: mirrored = MirroredStrategy over all GPUs (or CPU) of this machine; "
                             "multi_worker = MultiWorkerMirroredStrategy over the machines TF_CONFIG names (every "
                             "worker runs this command; the global batch is split over all their devices); auto = "
                             "multi_worker when TF_CONFIG names more than one worker, else mirrored when more than "
                             "one GPU is visible, else the default strategy")
    defaults = multi_worker.Timeouts()
    parser.add_argument("--startup-timeout", type=float, default=defaults.startup, metavar="SECONDS",
                        help="multi_worker: how long a worker waits for all workers to start before it stops "
                             f"with an error (default {defaults.startup:g})")
    parser.add_argument("--heartbeat-timeout", type=float, default=defaults.heartbeat, metavar="SECONDS",
                        help="multi_worker: a worker not heard from for this long is declared dead and every "
                             f"other worker stops with an error (default {defaults.heartbeat:g})")
    parser.add_argument("--stall-timeout", type=float, default=defaults.stall, metavar="SECONDS",
                        help="multi_worker: a worker that completes no training step and reaches no loop boundary "
                             "for this long (a worker that hangs alive, or waits for one) stops with an error; must "
                             "exceed the chief's held-out evaluation and an XLA compilation (default "
                             f"{defaults.stall:g})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    return parser


def _strategy(name, cluster, timeouts):
    """The strategy `--strategy name` asks for; `cluster` is TF_CONFIG's (None when unset).

    Created before any other TensorFlow op: MultiWorkerMirroredStrategy must configure the runtime first (and the
    GPU count of `auto` is asked only once the choice cannot be multi-worker).
    """
    import tensorflow as tf

    from trainers import multi_worker

    several = cluster is not None and cluster.num_workers > 1
    if name == "multi_worker" or (name == "auto" and several):
        if cluster is None:
            raise multi_worker.ClusterConfigError(
                "--strategy multi_worker needs TF_CONFIG, the cluster's addresses and this worker's task, e.g. "
                '{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}} '
                "(sqair-train-cluster sets it for workers on one machine)")
        return multi_worker.create_strategy(cluster, timeouts)
    if several:  # Each process would train alone in the same run directory.
        raise multi_worker.ClusterConfigError(
            f"TF_CONFIG names {cluster.num_workers} workers but --strategy {name} trains on one machine; use "
            "--strategy multi_worker (or auto), or unset TF_CONFIG")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _resolve(args):
    """The config to pass to the Trainer: None means 'resume with the stored one'."""
    import dataclasses

    from sqair_tf import models
    from trainers import checkpoints
    from trainers import config as config_lib

    stored = os.path.join(args.workdir, "config.json")
    overrides = list(args.set)
    if args.data:
        overrides.append(f"data_dir={os.path.abspath(args.data)}")
    if args.steps is not None:
        overrides.append(f"total_steps={args.steps}")
    if args.k is not None:
        overrides.append(f"num_particles={args.k}")
    if args.init_from:
        source = args.init_from
        if os.path.exists(source) or os.path.exists(source + ".index"):  # A path, kept valid from any directory.
            source = os.path.abspath(source)
        overrides.append(f"init_from={source}")
    if os.path.exists(stored):
        with open(stored) as f:
            base = config_lib.TrainConfig.from_json(f.read())
        model = args.model or base.model_name
        if args.preset:
            base = config_lib.preset(args.preset, [f"data_dir={base.data_dir}"], model=model)
        elif model != base.model_name:  # The trainer refuses it, naming both models.
            base = dataclasses.replace(base, model_name=model, model=models.preset(model))
        return base.with_overrides(overrides)
    if args.init_from and not args.preset and not args.model:  # The source's recipe, on this run's data.
        directory, _ = checkpoints.resolve_init_source(args.init_from)
        base = dataclasses.replace(checkpoints.load_config(directory), data_dir="")
        return base.with_overrides(overrides)
    return config_lib.preset(args.preset or "fast", overrides, model=args.model)


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.steps is not None and args.steps < 1:
        print(f"sqair-train: error: --steps must be ≥ 1, got {args.steps}", file=sys.stderr)
        return 2
    from data_pipelines.errors import DataError
    from trainers import checkpoints
    from trainers import multi_worker
    from trainers import trainer as trainer_lib

    try:
        cluster = multi_worker.cluster_from_environment()
        timeouts = multi_worker.Timeouts(startup=args.startup_timeout, heartbeat=args.heartbeat_timeout,
                                         stall=args.stall_timeout)
        config = _resolve(args)
        trainer = trainer_lib.Trainer(config, args.workdir, strategy=_strategy(args.strategy, cluster, timeouts),
                                      progress=not args.no_progress, stall_timeout=timeouts.stall)
        cfg, worker = trainer.config, trainer.worker
        if worker.is_chief:
            workers = f" on {worker.num_workers} workers" if worker.is_multi else ""
            # The schedule, not only its first rate: a resumed or --init-from run starts part-way along it.
            decays = (f" ×{cfg.lr_decay:.3g} at {', '.join(f'{b:,}' for b in cfg.lr_boundaries)} updates"
                      if cfg.lr_boundaries else "")
            print(f"training {cfg.total_steps:,} steps in {os.path.abspath(args.workdir)} "
                  f"(batch {cfg.batch_size}, K={cfg.num_particles}, {cfg.optimizer} lr {cfg.learning_rate:g}{decays}"
                  f"{f', gradient norm clipped at {cfg.clip_norm:g}' if cfg.clip_norm else ''}, "
                  f"curriculum {cfg.curriculum_start}→{cfg.max_seq_len} frames every {cfg.curriculum_stage_steps:,} "
                  f"steps, {trainer.strategy.num_replicas_in_sync} replica(s){workers})", flush=True)
        else:
            print(f"worker {worker.rank} of {worker.num_workers} ({worker.address}): training; the chief writes "
                  "checkpoints, TensorBoard and progress", flush=True)
        metrics = trainer.train()
    except (trainer_lib.ClusterError, multi_worker.ClusterStartError) as e:  # Not the input's fault: restart.
        print(f"sqair-train: error: {e}", file=sys.stderr)
        return 1
    except (trainer_lib.TrainingError, checkpoints.CheckpointError, DataError, ValueError) as e:
        print(f"sqair-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Saved by the trainer; 128 + the signal, as a shell reports it.
        return 128 + getattr(e, "signum", signal.SIGINT)
    step = int(trainer.step.numpy())
    if not worker.is_chief:
        print(f"worker {worker.rank}: done at step {step:,}")
        return 0
    counting = ""
    if trainer.model.has_objects:
        counting = f"counting accuracy {metrics.get('held_out_counting_accuracy', float('nan')):.4f}, "
    print(f"done at step {step:,}: {cfg.model_name} held-out {counting}"
          f"IWAE {metrics.get('held_out_iwae', float('nan')):.1f} nats/seq "
          f"({int(trainer.nonfinite_total.numpy())} non-finite updates skipped)")
    print(f"  checkpoint: {trainer.latest_checkpoint}")
    print(f"  TensorBoard: tensorboard --logdir {os.path.join(os.path.abspath(args.workdir), 'tensorboard')}")
    return 0


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    xla_cache.enable()  # Before TensorFlow starts: it reads TF_XLA_FLAGS once.
    sys.exit(main())


if __name__ == "__main__":
    run()
