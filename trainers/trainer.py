"""The training loop: IWAE + VIMCO (BUILD.md O4) with a curriculum on sequence length (BUILD.md O5).

A `Trainer` owns one run directory:

    WORKDIR/config.json         the resolved `TrainConfig` (a resume with an incompatible config is refused)
    WORKDIR/checkpoints/        `tf.train.CheckpointManager` (model, optimizer, step, non-finite counters)
    WORKDIR/tensorboard/train   scalars per loop, hparams
    WORKDIR/tensorboard/eval    held-out counting accuracy, IWAE, reconstruction images

Structure (Orbit-style): a `tf.function` runs `steps_per_loop` steps per call and returns metrics; logging,
checkpoints, the curriculum and the progress bar happen in Python between calls. The curriculum length L is a
Python int, so each stage gets its own trace with a static T (needed by XLA). With one replica (the usual CPU
case), the whole step — forward, backward, the non-finite check and the optimizer update, skipped with a `tf.cond`
when anything is non-finite — is one function, `jit_compile`d as one XLA cluster when `jit_compile` is set. With
several replicas, the per-replica forward/backward is compiled and the skip decision, which needs a cross-replica
all-reduce, and the update run outside XLA.

Determinism: the sampling seed of step s on replica r is fold_in(fold_in(seed, s), r) and the data order is a
deterministic function of the seed (`data_pipelines.dataset`), resumed by skipping the batches already used; so
an interrupted and resumed run reaches the same weights as an uninterrupted one (to float rounding: on a loaded
machine, multi-threaded CPU kernels may sum in another order).

Distribution: per-example losses are reduced with `tf.nn.compute_average_loss` over the global batch, so
gradients summed across replicas equal the gradient of the global-batch mean. Particles stay within their
sequence (the model tiles K inside each replica).
"""

import os
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from data_pipelines import dataset as dataset_lib
from data_pipelines import preview
from data_pipelines import records
from sqair_tf import interface
from sqair_tf import metrics as metrics_lib
from sqair_tf import models
from sqair_tf import objectives
from trainers import config as config_lib
from trainers import rmsprop_tf1


class TrainingError(Exception):
    """A run cannot start or continue (bad config, incompatible resume, too many non-finite updates)."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT or SIGTERM) after saving a checkpoint; `signum` says which."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


# Scalars returned by every training step, summed over the replica's sequences (divided by the global batch
# after the cross-replica sum). Units: IWAE/ELBO per sequence; the rest per frame, importance-weighted (BUILD.md O4).
# Models without objects (`interface.SequenceModel.has_objects`) have no OBJECT_METRICS.
STEP_METRICS = ("loss", "iwae", "elbo", "log_likelihood", "kl", "num_objects", "counting_accuracy", "ess")
OBJECT_METRICS = ("num_objects", "counting_accuracy")


def step_metrics(model):
    """The keys of STEP_METRICS that `model` reports."""
    return tuple(key for key in STEP_METRICS if model.has_objects or key not in OBJECT_METRICS)


def make_learning_rate(config):
    """A float, or a piecewise-constant schedule keyed on optimizer updates when `lr_boundaries` are set."""
    if not config.lr_boundaries:
        return config.learning_rate
    factors = [config.lr_decay ** i for i in range(len(config.lr_boundaries) + 1)]
    return rmsprop_tf1.paper_learning_rate_schedule(config.learning_rate, config.lr_boundaries, factors)


def make_optimizer(config):
    """The optimizer of `config` with its learning rate (`make_learning_rate`)."""
    lr = make_learning_rate(config)
    if config.optimizer == "rmsprop_tf1":
        return rmsprop_tf1.RMSPropTF1(learning_rate=lr, rho=config.rms_decay, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate=lr)


def sequence_statistics(outputs, num_particles, true_count):
    """Per-sequence training metrics [B] of one forward pass (see STEP_METRICS for the units); the object metrics
    only when the outputs have objects."""
    log_weights = interface.sequence_log_weights(outputs, num_particles)  # [B, K]
    frame_mean = lambda key: metrics_lib.per_particle_frame_mean(outputs[key], num_particles)  # noqa: E731
    discrete = ("_discrete",) if "log_q_discrete" in outputs else ()
    log_p = sum(frame_mean("log_p" + part) for part in ("_continuous",) + discrete)  # [B, K]
    log_q = sum(frame_mean("log_q" + part) for part in ("_continuous",) + discrete)  # [B, K]
    weighted = lambda values: metrics_lib.importance_weighted(values, log_weights)  # noqa: E731
    stats = {
        "iwae": objectives.iwae_bound(log_weights),
        "elbo": objectives.elbo(log_weights),
        "log_likelihood": weighted(frame_mean("log_likelihood")),
        "kl": weighted(log_q - log_p),
        "ess": objectives.effective_sample_size(log_weights),
    }
    if "num_objects" in outputs:
        stats["num_objects"] = weighted(frame_mean("num_objects"))
        stats["counting_accuracy"] = metrics_lib.counting_accuracy(outputs["num_objects"], true_count, log_weights)
    return stats


def loss_and_grads(model, config, frames, count, seed):
    """One replica's training loss, gradients and summed metrics (the body `jit_compile` applies to).

    Args:
      model: a `interface.SequenceModel`; config: the `TrainConfig`.
      frames: [B, L, H, W, 1] this replica's sequences, already cut to the curriculum length L.
      count: int [B] digit count of each sequence (for the logged counting accuracy).
      seed: int32 [2] this replica's sampling seed.

    Returns:
      (loss, grads, sums): the replica's share of the global-batch mean surrogate loss (÷ L, BUILD.md O5), its
      gradients w.r.t. `model.trainable_variables`, and per-replica sums over sequences of `STEP_METRICS`.
    """
    k = config.num_particles
    seq_len = frames.shape[1]
    with tf.GradientTape() as tape:
        outputs = model(frames, seed=seed, num_particles=k)
        log_weights = interface.sequence_log_weights(outputs, k)  # [B, K]
        discrete = interface.discrete_log_prob(outputs, k)  # [B, K], None without discrete latents
        if discrete is None:  # Every latent is reparameterised: the plain IWAE bound (paper §3).
            per_example = -objectives.iwae_bound(log_weights)  # [B]
        else:
            per_example = objectives.vimco_surrogate_loss(log_weights, discrete, signal=config.vimco_signal)  # [B]
        per_example = per_example / float(seq_len)  # BUILD.md O5: "the loss is divided by the current L"
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
    grads = tape.gradient(loss, model.trainable_variables)
    sums = {key: tf.reduce_sum(value) for key, value in sequence_statistics(outputs, k, count).items()}
    sums["loss"] = tf.reduce_sum(per_example)
    return loss, grads, sums


def evaluate_batch(model, frames, count, seed, num_particles):
    """Batch-mean metrics of `sequence_statistics` and the best particle's canvas (and boxes/ids/presence for a
    model with objects) [B, T, ...]."""
    outputs = model(frames, seed=seed, num_particles=num_particles)
    stats = sequence_statistics(outputs, num_particles, count)
    keys = ("canvas", "boxes", "object_ids", "z_pres") if model.has_objects else ("canvas",)
    best = interface.best_particle({key: outputs[key] for key in keys},
                                   interface.sequence_log_weights(outputs, num_particles))
    return {key: tf.reduce_mean(value) for key, value in stats.items()}, best


class Trainer:
    """Trains a model (`config.model_name`) in a run directory, resuming from its latest checkpoint.

    Args:
      config: a `TrainConfig` (with `data_dir` set).
      workdir: the run directory.
      strategy: a `tf.distribute.Strategy` (default: the current/default one).
      progress: show a progress bar (tqdm, with rate and ETA) on stderr.
      log: a function taking one line of text (default: print to stdout).
    """

    def __init__(self, config, workdir, strategy=None, progress=True, log=print):
        self.workdir = workdir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.progress = progress
        self.log = log
        self.config = self._resolve_config(config)
        cfg = self.config
        if not cfg.data_dir:
            raise TrainingError("no data directory: pass --data DIR (written by `sqair-data generate`)")
        self.train_manifest = records.read_manifest(cfg.data_dir, "train")
        self.eval_manifest = records.read_manifest(cfg.data_dir, "test")
        for manifest in (self.train_manifest, self.eval_manifest):  # Refuse corrupted data before training.
            records.verify_checksums(manifest)
        data_shape = (self.train_manifest["height"], self.train_manifest["width"], 1)
        if data_shape != cfg.model.image_shape:
            raise TrainingError(f"data in {cfg.data_dir} are {data_shape[0]}×{data_shape[1]} frames but the model "
                                f"expects {cfg.model.image_shape[0]}×{cfg.model.image_shape[1]} "
                                f"(set model.image_shape or generate matching data)")
        self.data_len = self.train_manifest["num_frames"]
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise TrainingError(f"batch_size {cfg.batch_size} is not divisible by the {replicas} replicas")

        # Initial weights are a function of the seed (Keras initializers draw from the global seed).
        keras.utils.set_random_seed(cfg.seed)
        mean_image = np.asarray(self.train_manifest["mean_frame"], np.float32)[..., None]  # [H, W, 1]
        with self.strategy.scope():
            self.model = models.build(cfg.model_name, cfg.model, mean_image=mean_image)
            h, w, c = cfg.model.image_shape
            self.model(tf.zeros([1, 1, h, w, c]), seed=tf.constant([0, 0]))  # Creates the variables.
            self.optimizer = make_optimizer(cfg)
            self.optimizer.build(self.model.trainable_variables)
            on_first = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.step = tf.Variable(0, dtype=tf.int64, name="step", **on_first)
            self.nonfinite_in_row = tf.Variable(0, dtype=tf.int64, name="nonfinite_in_row", **on_first)
            self.nonfinite_total = tf.Variable(0, dtype=tf.int64, name="nonfinite_total", **on_first)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                              nonfinite_in_row=self.nonfinite_in_row,
                                              nonfinite_total=self.nonfinite_total)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(workdir, "checkpoints"),
                                                  max_to_keep=cfg.keep_checkpoints)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            self.log(f"resumed from {self.manager.latest_checkpoint} at step {int(self.step.numpy())}")
        self._loops = {}
        # One replica: the fused step (one XLA cluster). Several: compiled forward/backward, update outside.
        self._fused = self.strategy.num_replicas_in_sync == 1
        self._grad_fn = tf.function(self._loss_and_grads, jit_compile=cfg.jit_compile)
        self._fused_fn = tf.function(self._fused_step, jit_compile=cfg.jit_compile)
        self._eval_fn = tf.function(self._evaluate_batch)
        self._writers = {name: tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", name))
                         for name in ("train", "eval")}
        self._eval_batch = None

    # ----------------------------------------------------------------------------------------------------------
    # Configuration and run directory.

    def _resolve_config(self, config):
        """Writes config.json on a fresh run; on resume, checks compatibility and keeps the stored run's values."""
        os.makedirs(self.workdir, exist_ok=True)
        path = os.path.join(self.workdir, "config.json")
        if os.path.exists(path):
            with open(path) as f:
                try:
                    stored = config_lib.TrainConfig.from_json(f.read())
                except (ValueError, TypeError) as e:
                    raise TrainingError(f"{path} is not a valid training config: {e}") from None
            if config is None:
                return stored
            clash = config_lib.incompatible_fields(stored, config)
            if clash:
                a, b = config_lib._flatten(stored.to_dict()), config_lib._flatten(config.to_dict())
                diffs = "; ".join(f"{k}: {a.get(k)!r} in the run, {b.get(k)!r} requested" for k in clash)
                raise TrainingError(f"refusing to resume {self.workdir} with an incompatible config ({diffs}). "
                                    f"Use a new --workdir, or resume with the run's own settings.")
        elif config is None:
            raise TrainingError(f"{self.workdir} has no config.json; choose a --preset to start a run")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(config.to_json())
        os.replace(tmp, path)
        return config

    def _dataset(self, skip_batches):
        data_config = dataset_lib.DataConfig(data_dir=self.config.data_dir, split="train",
                                             global_batch_size=self.config.batch_size, shuffle=True,
                                             shuffle_buffer=2000, seed=self.config.seed)
        fn = lambda ctx: dataset_lib.build_dataset(data_config, ctx, skip_batches=skip_batches)[0]  # noqa: E731
        return self.strategy.distribute_datasets_from_function(fn)

    # ----------------------------------------------------------------------------------------------------------
    # The compiled step.

    def _loss_and_grads(self, frames, count, seed):
        return loss_and_grads(self.model, self.config, frames, count, seed)

    def _fused_step(self, frames, count, seed):
        """Forward, backward, non-finite check and the (skipped when non-finite) update of a single replica."""
        loss, grads, sums = loss_and_grads(self.model, self.config, frames, count, seed)
        finite = _all_finite(loss, grads)

        def apply():
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        sums = {key: tf.where(finite, value, 0.0) for key, value in sums.items()}
        return sums, tf.cast(finite, tf.float32)

    def _replica_step(self, batch, step_seed, seq_len):
        ctx = tf.distribute.get_replica_context()
        seed = tf.random.experimental.stateless_fold_in(step_seed, ctx.replica_id_in_sync_group)
        frames = batch["frames"][:, :seq_len]  # [B, L, H, W, 1] — the curriculum (BUILD.md O5)
        if self._fused:
            return self._fused_fn(frames, batch["count"], seed)
        loss, grads, sums = self._grad_fn(frames, batch["count"], seed)
        finite = _all_finite(loss, grads)
        # Every replica must take the same decision: any non-finite replica skips the update everywhere.
        num_bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
        finite = num_bad < 0.5
        grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        self._apply_if_finite(finite, grads)
        sums = {key: tf.where(finite, value, 0.0) for key, value in sums.items()}
        return sums, tf.cast(finite, tf.float32)

    def _apply_if_finite(self, finite, grads):
        """Applies the update only when `finite`: the optimizer state does not move on a skipped step."""
        variables = self.model.trainable_variables

        def apply():
            self.optimizer.apply_gradients(zip(grads, variables))

        if not tf.distribute.has_strategy() or tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, apply, lambda: None)
            return

        # A cond whose branch calls merge_call (as apply_gradients does) must be taken in cross-replica context.
        def cross_replica(strategy, finite, grads):
            decision = strategy.experimental_local_results(finite)[0]

            def apply_each():
                strategy.extended.call_for_each_replica(
                    lambda g: self.optimizer.apply_gradients(zip(g, variables)), args=(grads,))

            tf.cond(decision, apply_each, lambda: None)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))

    def _train_loop(self, iterator, num_steps, seq_len):
        """Runs `num_steps` steps; returns metric sums over the loop's applied steps and the count of skips."""
        keys = step_metrics(self.model)
        totals = {key: tf.constant(0.0) for key in keys}
        applied = tf.constant(0.0)
        base_seed = tf.constant([self.config.seed, 0x5EED], tf.int32)
        for _ in tf.range(num_steps):
            step_seed = tf.random.experimental.stateless_fold_in(base_seed, tf.cast(self.step, tf.int32))
            sums, finite = self.strategy.run(self._replica_step, args=(next(iterator), step_seed, seq_len))
            sums = {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                    for key, value in sums.items()}
            finite = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, finite, axis=None)  # Equal on replicas.
            totals = {key: totals[key] + sums[key] for key in keys}
            applied += finite
            self.step.assign_add(1)
            self.nonfinite_in_row.assign(tf.where(finite > 0.5, tf.constant(0, tf.int64), self.nonfinite_in_row + 1))
            self.nonfinite_total.assign_add(tf.cast(finite < 0.5, tf.int64))
        return totals, applied

    def _loop_fn(self, seq_len):
        if seq_len not in self._loops:
            self._loops[seq_len] = tf.function(lambda it, n: self._train_loop(it, n, seq_len))
        return self._loops[seq_len]

    # ----------------------------------------------------------------------------------------------------------
    # Held-out evaluation.

    def _evaluate_batch(self, frames, count, seed):
        return evaluate_batch(self.model, frames, count, seed, self.config.num_particles)

    def held_out_batch(self):
        """The first `eval_batch_size` test sequences at full length (fixed for the whole run)."""
        if self._eval_batch is None:
            data_config = dataset_lib.DataConfig(data_dir=self.config.data_dir, split="test",
                                                 global_batch_size=self.config.eval_batch_size, shuffle=False,
                                                 repeat=False, drop_remainder=False)
            ds, _ = dataset_lib.build_dataset(data_config)
            self._eval_batch = next(iter(ds))
        return self._eval_batch

    def evaluate(self, images=False):
        """Counting accuracy, IWAE, ... on the held-out batch; logs them (and images) to TensorBoard."""
        batch = self.held_out_batch()
        stats, best = self._eval_fn(batch["frames"], batch["count"], tf.constant([self.config.seed, 0xE7A1]))
        stats = {key: float(value) for key, value in stats.items()}
        step = int(self.step.numpy())
        with self._writers["eval"].as_default(step=step):
            for key, value in stats.items():
                tf.summary.scalar(f"held_out/{key}", value)
            if images:
                rows = lambda x: None if x is None else x[:4]  # noqa: E731
                tf.summary.image("reconstruction", preview.as_summary_image(preview.reconstruction_grid(
                    rows(batch["frames"]), rows(best["canvas"]), rows(best.get("boxes")), rows(best.get("object_ids")),
                    rows(best.get("z_pres")))))
        return stats

    # ----------------------------------------------------------------------------------------------------------
    # The run.

    def _write_hparams(self):
        from tensorboard.plugins.hparams import api as hp
        flat = config_lib._flatten(self.config.to_dict())
        hparams = {key: (str(value) if isinstance(value, (list, tuple)) else value) for key, value in flat.items()
                   if key not in config_lib.RESUMABLE_FIELDS}
        with self._writers["train"].as_default(step=0):
            hp.hparams(hparams, trial_id=os.path.basename(os.path.abspath(self.workdir)))

    def save(self):
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        return path

    def train(self, total_steps=None, finalize=True, max_seconds=None):
        """Trains until `total_steps` (default: the config's), returning the last loop's metrics.

        With `finalize` (default), reaching `total_steps` also evaluates, logs images and saves a checkpoint;
        callers that train in chunks (benchmarks) pass False and get the periodic ones only.

        `max_seconds` is a wall-clock budget (the demo's: machines of one kind differ 3-4x in speed, so a fixed
        step count would not fit a fixed time): training stops after the first loop that ends past it, and that
        step is finalized like the last one. The first loop's compilation counts against the budget.

        Saves a checkpoint every `checkpoint_every` steps, at the end, and when interrupted (Ctrl-C or SIGTERM, then
        raises `Interrupted`), so an interruption loses nothing; stops with TrainingError after `max_nonfinite_in_row` skipped updates in a
        row, keeping the last good checkpoint.
        """
        cfg = self.config
        total = int(total_steps or cfg.total_steps)
        step = int(self.step.numpy())
        deadline = None if max_seconds is None else time.monotonic() + float(max_seconds)
        if step == 0:
            self._write_hparams()
        iterator = self._iterator_at(step)
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=step, unit="step", desc="train", file=sys.stderr, dynamic_ncols=True,
                       smoothing=0.1)
        last = {}
        # Ctrl-C (SIGINT) and SIGTERM (what Kubernetes and Slurm send before they kill a job) are turned into a flag
        # checked between loops: a KeyboardInterrupt raised at an arbitrary point can be swallowed by library code
        # (a CI run kept training after SIGINT) or land mid-save.
        stop = []
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda signum, _: stop.append(signum))
        try:
            while step < total:
                if stop:
                    raise Interrupted(stop[0])
                seq_len = cfg.seq_len(step, self.data_len)
                boundaries = [total, cfg.next_stage_step(step), _next_multiple(step, cfg.checkpoint_every),
                              _next_multiple(step, cfg.eval_every), step + cfg.steps_per_loop]
                num = min(boundaries) - step
                start = time.perf_counter()
                try:
                    totals, applied = self._loop_fn(seq_len)(iterator, tf.constant(num))
                except tf.errors.DataLossError as e:  # A record that went bad after the start: say which shard.
                    raise records.data_loss_error(self.train_manifest, e) from None
                elapsed = time.perf_counter() - start
                step = int(self.step.numpy())
                self._iterator_step = step
                applied = float(applied)
                last = {key: float(value) / max(applied, 1.0) / cfg.batch_size for key, value in totals.items()}
                last.update(steps_per_sec=num / elapsed, seq_len=seq_len, skipped=num - applied,
                            learning_rate=float(self._learning_rate()))
                self._log_scalars(step, last)
                if bar is not None:
                    bar.update(num)
                    postfix = dict(L=seq_len, iwae=f"{last['iwae']:.0f}")
                    if "counting_accuracy" in last:
                        postfix["acc"] = f"{last['counting_accuracy']:.3f}"
                    bar.set_postfix(**postfix)
                in_row = int(self.nonfinite_in_row.numpy())
                if in_row >= cfg.max_nonfinite_in_row:
                    raise TrainingError(
                        f"stopping at step {step}: {in_row} consecutive updates had a non-finite loss or gradient "
                        f"({int(self.nonfinite_total.numpy())} in total). The last good checkpoint is "
                        f"{self.manager.latest_checkpoint}; try a lower learning_rate.")
                out_of_time = deadline is not None and time.monotonic() >= deadline
                final = finalize and (step == total or out_of_time)
                if step % cfg.eval_every == 0 or final:
                    try:
                        held_out = self.evaluate(images=step % cfg.image_every == 0 or final)
                    except tf.errors.DataLossError as e:
                        raise records.data_loss_error(self.eval_manifest, e) from None
                    last.update({f"held_out_{key}": value for key, value in held_out.items()})
                    msg = f"step {step}: held-out "
                    if "counting_accuracy" in held_out:
                        msg += f"counting accuracy {held_out['counting_accuracy']:.4f}, "
                    msg += f"IWAE {held_out['iwae']:.1f} nats/seq"
                    bar.write(msg) if bar is not None else self.log(msg)
                if step % cfg.checkpoint_every == 0 or final:
                    self.save()
                if out_of_time:
                    break
        except KeyboardInterrupt as e:
            path = self.save()
            if bar is not None:
                bar.close()
            name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
            self.log(f"interrupted: saved {path} at step {int(self.step.numpy())}; run again to resume (stopped by "
                     f"{name})")
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if bar is not None:
                bar.close()
            for writer in self._writers.values():
                writer.flush()
        return last

    def _iterator_at(self, step):
        """The training iterator positioned at `step` (kept across `train` calls; rebuilt by skipping on resume)."""
        if getattr(self, "_iterator_step", None) != step:
            self._iterator = iter(self._dataset(skip_batches=step))
            self._iterator_step = step
        return self._iterator

    def _learning_rate(self):
        lr = self.optimizer.learning_rate
        return lr.numpy() if hasattr(lr, "numpy") else lr

    def _log_scalars(self, step, values):
        with self._writers["train"].as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(key, value)


def _all_finite(loss, grads):
    """Scalar bool: the loss and every gradient entry are finite."""
    finite = tf.math.is_finite(loss)
    for g in grads:
        finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
    return finite


def _next_multiple(step, every):
    return (step // every + 1) * every
