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

Several machines (`MultiWorkerMirroredStrategy`, `trainers.multi_worker`, BUILD.md "Multi-worker"): the same loop on
every worker; only the chief (worker 0) writes config.json, TensorBoard, progress and the kept checkpoints, while
the other workers take part in every save (a collective) with a throw-away copy; every worker restores the chief's
latest checkpoint; before anything is built the workers check with one collective that they run the same config on
the same data from the same checkpoint; a signal on any worker is agreed at the next loop boundary, so all of them
save the same step and stop; a lost worker stops every other with a `ClusterError` within the timeouts.
"""

import contextlib
import os
import shutil
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
from trainers import checkpoints
from trainers import config as config_lib
from trainers import gradient_registry
from trainers import multi_worker
from trainers import rmsprop_tf1
from trainers import run_history


class TrainingError(Exception):
    """A run cannot start or continue (bad config, incompatible resume, too many non-finite updates)."""


class ClusterError(TrainingError):
    """A multi-worker run lost a worker, or waited for one longer than the timeouts allow; restarting every worker
    resumes from the last checkpoint."""


# What a collective raises when a peer died (Unavailable), went silent or stuck (DeadlineExceeded) or when the
# runtime aborted it because of either (Cancelled, Aborted).
_CLUSTER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                     tf.errors.AbortedError)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT or SIGTERM) after saving a checkpoint; `signum` says which, `workers`
    which workers received it (in a multi-worker run, any worker's signal stops all)."""

    def __init__(self, signum, workers=(0,)):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.workers = tuple(workers)


# Scalars returned by every training step, summed over the replica's sequences (divided by the global batch
# after the cross-replica sum). Units: IWAE/ELBO per sequence; the rest per frame, importance-weighted (BUILD.md O4).
# Models without objects (`interface.SequenceModel.has_objects`) have no OBJECT_METRICS.
STEP_METRICS = ("loss", "iwae", "elbo", "log_likelihood", "kl", "num_objects", "counting_accuracy", "ess")
OBJECT_METRICS = ("num_objects", "counting_accuracy")
# Per applied step, not per sequence: the global norm of the gradient the optimizer received before clipping (the
# replicas' summed gradient), and the fraction of steps that `clip_norm` clipped. With several replicas the norm of
# the sum needs an all-reduce of the whole gradient, which only clipping pays for, so `grad_norm` is logged there
# only when `clip_norm` is set; `clipped_fraction` only when it is.
GRADIENT_METRICS = ("grad_norm", "clipped_fraction")


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


def training_step_seed(seed, step):
    """int32 [2]: the sampling seed of training step `step` of a run seeded `seed`; replica r of the step samples
    with fold_in(it, r), so a run's samples depend on the step and the replica, never on the machine."""
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, 0x5EED], tf.int32), tf.cast(step, tf.int32))


def loss_and_grads(model, config, frames, count, seed, count_penalty=None):
    """One replica's training loss, gradients and summed metrics (the body `jit_compile` applies to).

    Args:
      model: a `interface.SequenceModel`; config: the `TrainConfig`.
      frames: [B, L, H, W, 1] this replica's sequences, already cut to the curriculum length L.
      count: int [B] digit count of each sequence (for the logged counting accuracy).
      seed: int32 [2] this replica's sampling seed.
      count_penalty: λ for this step instead of the model config's (`Trainer.count_penalty_at`); None keeps it.

    Returns:
      (loss, grads, sums): the replica's share of the global-batch mean surrogate loss (÷ L, BUILD.md O5), its
      gradients w.r.t. `model.trainable_variables`, and per-replica sums over sequences of `STEP_METRICS`.
    """
    k = config.num_particles
    seq_len = frames.shape[1]
    with tf.GradientTape() as tape:
        outputs = model(frames, seed=seed, num_particles=k, count_penalty=count_penalty)
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
      stall_timeout: with several workers, seconds without a step or loop boundary after which this worker stops
        (`multi_worker.StallWatchdog`).
    """

    def __init__(self, config, workdir, strategy=None, progress=True, log=print,
                 stall_timeout=multi_worker.Timeouts().stall):
        self.workdir = workdir
        self.stall_timeout = stall_timeout
        self._boundaries = 0  # Loop boundaries passed: the watchdog's sign of progress between steps.
        self.strategy = strategy or tf.distribute.get_strategy()
        # Under MultiWorkerMirroredStrategy, only the chief writes the run directory and reports progress.
        self.worker = multi_worker.Worker.of(self.strategy)
        self.progress = progress and self.worker.is_chief
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
        if not cfg.jit_compile:
            # Without XLA, Grappler's memory optimizer rewrites a gradient sum (AddN) inside the gradient of the
            # time loop into a temporary variable whose name collides with itself when that loop runs inside the
            # training loop's: `AlreadyExistsError ... AddN_27/tmp_var` on the first step of the `paper` preset at
            # B = 32, T = 10. The memory optimizer cannot be switched off alone, so Grappler is, for this process
            # (BUILD.md "Speed": about 5-8 % slower per step without XLA, a faster first loop).
            tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise TrainingError(f"batch_size {cfg.batch_size} is not divisible by the {replicas} replicas")
        self.checkpoint_dir = os.path.join(workdir, "checkpoints")
        latest = self.latest_checkpoint  # Every worker resumes the chief's latest.
        if self.worker.is_multi:
            self._gather_fn = tf.function(self._gather)
            with self._together("before training started"):
                self._check_workers_agree(latest)

        # Initial weights are a function of the seed (Keras initializers draw from the global seed; with several
        # workers, the variables' initial values are broadcast from the chief).
        keras.utils.set_random_seed(cfg.seed)
        mean_image = np.asarray(self.train_manifest["mean_frame"], np.float32)[..., None]  # [H, W, 1]
        with self.strategy.scope(), self._together("before training started"):
            self.model = models.build(cfg.model_name, cfg.model, mean_image=mean_image)
            self.model.unroll_time = cfg.unroll_time
            h, w, c = cfg.model.image_shape
            self.model(tf.zeros([1, 1, h, w, c]), seed=tf.constant([0, 0]))  # Creates the variables.
            self.optimizer = make_optimizer(cfg)
            self.optimizer.build(self.model.trainable_variables)
            on_first = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.step = tf.Variable(0, dtype=tf.int64, name="step", **on_first)
            self._local_step = self.strategy.experimental_local_results(self.step)[0]  # Read by the watchdog.
            self.nonfinite_in_row = tf.Variable(0, dtype=tf.int64, name="nonfinite_in_row", **on_first)
            self.nonfinite_total = tf.Variable(0, dtype=tf.int64, name="nonfinite_total", **on_first)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                              nonfinite_in_row=self.nonfinite_in_row,
                                              nonfinite_total=self.nonfinite_total)
        if self.worker.is_chief:
            self.manager = tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir,
                                                      max_to_keep=cfg.keep_checkpoints)
        else:  # Saving is a collective: this worker saves too, to a copy it deletes (`save`).
            temp = multi_worker.temp_checkpoint_dir(workdir, self.worker.rank)
            shutil.rmtree(temp, ignore_errors=True)  # A copy left by a crash.
            self.manager = tf.train.CheckpointManager(self.checkpoint, temp, max_to_keep=1)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.log(f"resumed from {latest} at step {int(self.step.numpy())}")
        initialised = not latest and bool(cfg.init_from)
        if initialised:
            self._initialise_from(cfg.init_from)
        self._loop = None  # The compiled loop of the current curriculum stage, the last of `_loop_keys`.
        self._loop_keys = []  # Every stage's key, in the order traced (`_loop_fn`).
        # One replica: the fused step (one XLA cluster). Several, or a multi-worker strategy (whose optimizer
        # update all-reduces, which XLA cannot compile on CPU): compiled forward/backward, update outside.
        self._fused = (self.strategy.num_replicas_in_sync == 1
                       and not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy))
        self._new_step_fns()
        self._eval_fn = tf.function(self._evaluate_batch)
        if self.worker.is_chief:
            self._writers = {name: tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", name))
                             for name in ("train", "eval")}
        else:
            self._writers = {name: tf.summary.create_noop_writer() for name in ("train", "eval")}
        if initialised:  # Where the run's own training begins (`run_history.training_minutes`).
            step = int(self.step.numpy())
            with self._writers["train"].as_default():
                tf.summary.scalar(run_history.INIT_STEP_TAG, step, step=step)
        self._eval_batch = None

    def _initialise_from(self, source):
        """Takes the model's weights and the step from `source` (`TrainConfig.init_from`) and saves them as the run's
        first checkpoint, so an interruption resumes from them rather than from the seed's weights.

        The optimizer's moments start at zero (a shipped model has no optimizer slots, and a run's belong to its own
        objective), but its update count starts at the source's step, so the learning-rate schedule goes on where
        the source was. With Adam that count also sets the bias correction, which then assumes moments averaged
        over many steps: the first hundred or so updates are up to about 6x the scheduled rate (m/√v of zero-started
        moments), settling within about a thousand."""
        try:
            _, prefix = checkpoints.resolve_init_source(source)
        except checkpoints.CheckpointError as e:
            raise TrainingError(str(e)) from None
        try:
            checkpoints.restore_weights(self.model, self.step, prefix)
        except (AssertionError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TrainingError(f"init_from {source!r}: the weights of {prefix} do not fit the run's model "
                                f"{self.config.model_name!r} ({first[:300]}); train with the source's config "
                                f"(no --preset) or a preset of the same architecture") from None
        step = int(self.step.numpy())
        # The learning-rate schedule counts optimizer updates (`make_learning_rate`): it continues from the source's.
        self.optimizer.iterations.assign(step)
        if step >= self.config.total_steps:
            raise TrainingError(f"init_from {source!r} is at step {step:,}, and this run stops at total_steps "
                                f"{self.config.total_steps:,}: pass --steps past {step:,}")
        self.log(f"initialised from {prefix} at step {step:,} (fresh optimizer); "
                 f"saved {self.save()}")

    # ----------------------------------------------------------------------------------------------------------
    # Configuration and run directory.

    def _resolve_config(self, config):
        """Writes config.json on a fresh run; on resume, checks compatibility and keeps the stored run's values.

        Only the chief writes: the other workers of a multi-worker run read the run directory (on a filesystem they
        share) and are checked against the chief's config by `_check_workers_agree`.
        """
        if self.worker.is_chief:
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
            # A worker checks its config against the chief's in `_check_workers_agree`, a collective: refusing
            # here would leave the chief waiting there, and whether the chief has rewritten config.json yet is a
            # race.
            if clash and self.worker.is_chief:
                diffs = config_lib.describe_differences(stored, config, clash, "in the run", "requested")
                raise TrainingError(f"refusing to resume {self.workdir} with an incompatible config ({diffs}). "
                                    f"Use a new --workdir, or resume with the run's own settings.")
        elif config is None:
            raise TrainingError(f"{self.workdir} has no config.json; choose a --preset to start a run")
        if not self.worker.is_chief:  # The chief writes it; `_check_workers_agree` checks this worker's is equal.
            return config
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(config.to_json())
        os.replace(tmp, path)
        return config

    def train_data_config(self):
        """The `DataConfig` of the training batches. Each input pipeline (one per worker) reads its own part of the
        shards with the per-replica batch (`dataset_lib.build_dataset` with the strategy's `InputContext`)."""
        return dataset_lib.DataConfig(data_dir=self.config.data_dir, split="train",
                                      global_batch_size=self.config.batch_size, shuffle=True, shuffle_buffer=2000,
                                      seed=self.config.seed)

    def _dataset(self, skip_batches):
        data_config = self.train_data_config()
        fn = lambda ctx: dataset_lib.build_dataset(data_config, ctx, skip_batches=skip_batches)[0]  # noqa: E731
        return self.strategy.distribute_datasets_from_function(fn)

    # ----------------------------------------------------------------------------------------------------------
    # Keeping the workers of a multi-worker run in step (each method below is a collective: every worker calls it
    # at the same point of the run, or the callers wait for each other until the stall timeout).

    def _gather(self, values):
        """int64 [V] of this worker → int64 [replicas, V], every replica's row in replica order."""
        return self.strategy.gather(self.strategy.run(lambda: values[None]), axis=0)

    def _from_every_worker(self, values):
        """numpy int64 [workers, V]: `values` (a list of V ints) of every worker, the chief's first."""
        rows = self._gather_fn(tf.constant(values, tf.int64)).numpy()  # [replicas, V]
        return rows[::self.strategy.num_replicas_in_sync // self.worker.num_workers]  # The first replica of each.

    def _check_workers_agree(self, latest):
        """Refuses to start unless every worker has the chief's config and data and resumes the chief's checkpoint.

        One collective, before any variable exists: workers whose models differ would otherwise fail inside the
        variables' initial broadcasts with an error that names neither the fields nor the workers, and workers that
        differ only in execution settings (steps per loop, checkpoint cadence) would reach their collectives at
        different steps. Each worker compares a hash (`multi_worker.fingerprint`) with the chief's; one that
        differs then names its differing fields against the chief's config.json.
        """
        rows = self._from_every_worker([multi_worker.fingerprint(self.config, self.train_manifest),
                                        _checkpoint_number(latest)])  # [workers, 2]
        differ = [w for w in range(len(rows)) if rows[w, 0] != rows[0, 0]]
        if self.worker.rank in differ:
            raise TrainingError(self._difference_from_chief())
        if differ:
            raise TrainingError(f"worker(s) {', '.join(map(str, differ))} started with a config or data other than "
                                "the chief's (their logs name the fields); start every worker with the same "
                                "sqair-train arguments and data")
        if any(rows[:, 1] != rows[0, 1]):
            seen = ", ".join(f"worker {w}: {'none' if n < 0 else f'step {n}'}" for w, n in enumerate(rows[:, 1]))
            raise TrainingError(f"the workers see different latest checkpoints in {self.checkpoint_dir} ({seen}): "
                                "the run directory must be on a filesystem every worker shares")

    def _difference_from_chief(self):
        """Why this worker's fingerprint differs from the chief's, as one message."""
        path = os.path.join(self.workdir, "config.json")
        try:
            with open(path) as f:
                chief = config_lib.TrainConfig.from_json(f.read())
        except (OSError, ValueError, TypeError):
            return (f"worker {self.worker.rank}'s config or data differ from the chief's, whose {path} cannot be "
                    "read: the run directory must be on a filesystem every worker shares")
        clash = config_lib.differing_fields(chief, self.config, ignore=("data_dir",))
        if clash:
            diffs = config_lib.describe_differences(chief, self.config, clash, "on the chief", "here")
            return (f"worker {self.worker.rank} was started with a config other than the chief's ({diffs}); start "
                    "every worker with the same sqair-train arguments")
        return (f"worker {self.worker.rank}'s training data differ from the chief's (the shards listed in "
                f"{os.path.join(self.config.data_dir, 'train.json')}: names, sizes or checksums); every worker "
                "must read the same data")

    def _agreed_stop(self, stop):
        """(signal number or 0, the workers that received it): a stop requested on any worker stops all of them.

        A signal reaches one worker (a preempted machine) or all (Ctrl-C in a launcher, a job cancelled); each
        records it in `stop` and the workers all-gather their flags at every loop boundary, so they all take the
        same decision at the same step and all take part in the checkpoint save (a collective). The cost is one
        tiny collective per loop, not per step. SIGTERM wins over SIGINT: it announces that the machine goes away.
        """
        if not self.worker.is_multi:
            return (stop[0], [0]) if stop else (0, [])
        local = stop[0] if stop else 0
        flags = self._from_every_worker([int(local == signal.SIGINT), int(local == signal.SIGTERM)])  # [W, 2]
        for column, signum in ((1, signal.SIGTERM), (0, signal.SIGINT)):
            if flags[:, column].any():
                return int(signum), [int(w) for w in np.flatnonzero(flags[:, column])]
        return 0, []

    def _any_worker(self, flag):
        """True on every worker if `flag` is true on any (a local decision that must be the same everywhere)."""
        if not self.worker.is_multi:
            return bool(flag)
        return bool(self._from_every_worker([int(bool(flag))]).any())

    def _watchdog(self):
        """A `multi_worker.StallWatchdog` for a multi-worker run (nothing to watch on one machine)."""
        if not self.worker.is_multi:
            return contextlib.nullcontext()
        return multi_worker.StallWatchdog(self.stall_timeout, self._progress)

    def _progress(self):
        """What changes while the run moves: the step counter (read from the watchdog's thread) and boundaries."""
        step = getattr(self, "_local_step", None)
        return (-1 if step is None else int(step.numpy()), self._boundaries)

    @contextlib.contextmanager
    def _together(self, when=None):
        """Work every worker must do together: a failed collective becomes one ClusterError
        (`_cluster_failures`) and a worker that hangs while alive is caught by the stall watchdog."""
        with self._cluster_failures(when), self._watchdog():
            yield

    @contextlib.contextmanager
    def _cluster_failures(self, when=None):
        """Turns a failed collective of a multi-worker run into one ClusterError that says what to do; `when`
        defaults to the current step."""
        try:
            yield
        except _CLUSTER_FAILURES as e:
            if not self.worker.is_multi:
                raise
            when = when or f"at step {int(self.step.numpy())}"
            latest = self.latest_checkpoint
            resume = f"they resume from {latest}" if latest else "the run starts again from step 0"
            raise ClusterError(f"worker {self.worker.rank} of {self.worker.num_workers} lost the cluster {when} "
                               f"({multi_worker.failure_reason(e)}); another worker stopped, failed or hung (see "
                               f"its log). Start every worker again: {resume}") from None

    # ----------------------------------------------------------------------------------------------------------
    # The compiled step.

    def _loss_and_grads(self, frames, count, seed, count_penalty=None):
        return loss_and_grads(self.model, self.config, frames, count, seed, count_penalty)

    def count_penalty_at(self, step):
        """The λ the loss of `step` uses instead of the model config's: 0 before `count_penalty_start`, else None
        (the config's). A Python value, so the compiled loop of each phase is traced with its own constant."""
        return 0.0 if step < self.config.count_penalty_start else None

    def gradient_metrics(self):
        """The keys of GRADIENT_METRICS this trainer logs (see there for when)."""
        clip = bool(self.config.clip_norm)
        logged = {"grad_norm": clip or self.strategy.num_replicas_in_sync == 1, "clipped_fraction": clip}
        return tuple(key for key in GRADIENT_METRICS if logged[key])

    def _add_gradient_metrics(self, sums, norm, replicas):
        """`sums` with the GRADIENT_METRICS of one step whose applied gradient has global norm `norm`, each scaled
        by this replica's share of the batch so that the loop's mean over sequences is the mean over steps."""
        share = self.config.batch_size / replicas
        sums = dict(sums, grad_norm=norm * share)
        if self.config.clip_norm:
            sums["clipped_fraction"] = tf.cast(norm > self.config.clip_norm, tf.float32) * share
        return sums

    def _fused_step(self, frames, count, seed, count_penalty=None):
        """Forward, backward, non-finite check and the (skipped when non-finite) update of a single replica."""
        loss, grads, sums = loss_and_grads(self.model, self.config, frames, count, seed, count_penalty)
        finite = _all_finite(loss, grads)
        norm = gradient_norm(grads)
        grads = clip_by_global_norm(grads, self.config.clip_norm, norm=norm)
        sums = self._add_gradient_metrics(sums, norm, replicas=1)

        def apply():
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return tf.constant(True)

        tf.cond(finite, apply, lambda: tf.constant(False))
        sums = {key: tf.where(finite, value, 0.0) for key, value in sums.items()}
        return sums, tf.cast(finite, tf.float32)

    def _replica_step(self, batch, step_seed, seq_len, count_penalty):
        ctx = tf.distribute.get_replica_context()
        seed = tf.random.experimental.stateless_fold_in(step_seed, ctx.replica_id_in_sync_group)
        frames = batch["frames"][:, :seq_len]  # [B, L, H, W, 1] — the curriculum (BUILD.md O5)
        if self._fused:
            return self._fused_fn(frames, batch["count"], seed, count_penalty)
        loss, grads, sums = self._grad_fn(frames, batch["count"], seed, count_penalty)
        finite = _all_finite(loss, grads)
        # Every replica must take the same decision: any non-finite replica skips the update everywhere.
        num_bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
        finite = num_bad < 0.5
        grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        if "grad_norm" in self.gradient_metrics():
            norm = gradient_norm(grads, ctx)
            grads = clip_by_global_norm(grads, self.config.clip_norm, norm=norm)
            sums = self._add_gradient_metrics(sums, norm, ctx.num_replicas_in_sync)
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

    def _train_loop(self, iterator, num_steps, seq_len, count_penalty):
        """Runs `num_steps` steps; returns metric sums over the loop's applied steps and the count of skips."""
        keys = step_metrics(self.model) + self.gradient_metrics()
        totals = {key: tf.constant(0.0) for key in keys}
        applied = tf.constant(0.0)
        for _ in tf.range(num_steps):
            step_seed = training_step_seed(self.config.seed, self.step)
            sums, finite = self.strategy.run(self._replica_step,
                                             args=(next(iterator), step_seed, seq_len, count_penalty))
            sums = {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                    for key, value in sums.items()}
            finite = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, finite, axis=None)  # Equal on replicas.
            totals = {key: totals[key] + sums[key] for key in keys}
            applied += finite
            self.step.assign_add(1)
            self.nonfinite_in_row.assign(tf.where(finite > 0.5, tf.constant(0, tf.int64), self.nonfinite_in_row + 1))
            self.nonfinite_total.assign_add(tf.cast(finite < 0.5, tf.int64))
        return totals, applied

    def _new_step_fns(self):
        """Untraced step functions: the split one (forward/backward) and the fused one (with the update)."""
        self._grad_fn = tf.function(self._loss_and_grads, jit_compile=self.config.jit_compile)
        self._fused_fn = tf.function(self._fused_step, jit_compile=self.config.jit_compile)

    def _loop_fn(self, seq_len, count_penalty=None):
        """The compiled loop of one curriculum length and one count penalty (`count_penalty_at`).

        Only the current one is kept, with its step functions: both change only as the step grows, so a run never
        goes back to a loop it left, and each trace holds its graph for as long as its function lives (BUILD.md
        "Memory")."""
        key = (seq_len, count_penalty)
        if self._loop_keys[-1:] != [key]:
            if self._loop_keys:  # A stage left behind: its graphs go before the new ones are traced.
                self._loop = None
                self._new_step_fns()
            traced = tf.function(lambda it, n: self._train_loop(it, n, seq_len, count_penalty))

            def loop(iterator, num_steps):
                with gradient_registry.custom_gradients_dropped():  # Else each trace outlives the trainer.
                    return traced(iterator, num_steps)

            self._loop = loop
            self._loop_keys.append(key)
        return self._loop

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
        """Saves a checkpoint at the current step and returns the run's path of it.

        With several workers saving is a collective: every worker saves, the chief into the run directory and the
        others into a temporary directory they delete at once (TensorFlow's multi-worker convention)."""
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        if not self.worker.is_chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            path = os.path.join(self.checkpoint_dir, os.path.basename(path))
        return path

    @property
    def latest_checkpoint(self):
        """The run's newest checkpoint (the chief's, on every worker), or None."""
        return tf.train.latest_checkpoint(self.checkpoint_dir)

    def train(self, total_steps=None, finalize=True, max_seconds=None):
        """Trains until `total_steps` (default: the config's), returning the last loop's metrics.

        With `finalize` (default), reaching `total_steps` also evaluates, logs images and saves a checkpoint;
        callers that train in chunks (benchmarks) pass False and get the periodic ones only.

        `max_seconds` is a wall-clock budget (the demo's: machines of one kind differ 3-4x in speed, so a fixed
        step count would not fit a fixed time): training stops after the first loop that ends past it, and that
        step is finalized like the last one. The first loop's compilation counts against the budget.

        Saves a checkpoint every `checkpoint_every` steps, at the end, and when interrupted (Ctrl-C or SIGTERM, then
        raises `Interrupted`), so an interruption loses nothing; stops with TrainingError after
        `max_nonfinite_in_row` skipped updates in a row, keeping the last good checkpoint.

        With several workers, every worker calls `train` with the same arguments; a signal on any of them stops all
        at the next loop boundary (`_agreed_stop`), and a lost worker raises ClusterError on the others.
        """
        cfg = self.config
        total = int(total_steps or cfg.total_steps)
        step = int(self.step.numpy())
        deadline = None if max_seconds is None else time.monotonic() + float(max_seconds)
        if step == 0 and self.worker.is_chief:
            self._write_hparams()
        iterator = self._iterator_at(step)
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=total, initial=step, unit="step", desc="train", file=sys.stderr, dynamic_ncols=True,
                       smoothing=0.1)
        # Ctrl-C (SIGINT) and SIGTERM (what Kubernetes and Slurm send before they kill a job) are turned into a flag
        # checked between loops: a KeyboardInterrupt raised at an arbitrary point can be swallowed by library code
        # (a CI run kept training after SIGINT) or land mid-save.
        stop = []
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda signum, _: stop.append(signum))
        last = {}
        try:
            with self._together():
                last = self._run_loops(iterator, step, total, deadline, finalize, stop, bar)
        except KeyboardInterrupt as e:
            with self._together():
                path = self.save()
                self._barrier()
            if bar is not None:
                bar.close()
            name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
            if self.worker.is_multi:
                name += f" on worker(s) {', '.join(map(str, getattr(e, 'workers', ())))}"
            saved = "saved" if self.worker.is_chief else "the chief saved"
            self.log(f"interrupted: {saved} {path} at step {int(self.step.numpy())}; run again to resume (stopped "
                     f"by {name})")
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if bar is not None:
                bar.close()
            for writer in self._writers.values():
                writer.flush()
        return last

    def _run_loops(self, iterator, step, total, deadline, finalize, stop, bar):
        """The loops of `train` from `step` to `total`; returns the last loop's metrics."""
        cfg = self.config
        last = {}
        while step < total:
            self._boundaries += 1
            signum, workers = self._agreed_stop(stop)
            if signum:
                raise Interrupted(signum, workers)
            seq_len = cfg.seq_len(step, self.data_len)
            boundaries = [total, cfg.next_stage_step(step), _next_multiple(step, cfg.checkpoint_every),
                          _next_multiple(step, cfg.eval_every), step + cfg.steps_per_loop]
            if step < cfg.count_penalty_start:
                boundaries.append(cfg.count_penalty_start)
            num = min(boundaries) - step
            start = time.perf_counter()
            try:
                totals, applied = self._loop_fn(seq_len, self.count_penalty_at(step))(iterator, tf.constant(num))
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
            in_row = int(self.nonfinite_in_row.numpy())  # The same on every worker: the skips are agreed.
            if in_row >= cfg.max_nonfinite_in_row:
                raise TrainingError(
                    f"stopping at step {step}: {in_row} consecutive updates had a non-finite loss or gradient "
                    f"({int(self.nonfinite_total.numpy())} in total). The last good checkpoint is "
                    f"{self.latest_checkpoint}; try a lower learning_rate.")
            # Each worker's clock is its own: the budget ends when it ends for any of them.
            out_of_time = deadline is not None and self._any_worker(time.monotonic() >= deadline)
            final = finalize and (step == total or out_of_time)
            if self.worker.is_chief and (step % cfg.eval_every == 0 or final):  # Not a collective.
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
                self._boundaries += 1
            if step % cfg.checkpoint_every == 0 or final:
                self.save()
            if out_of_time:
                break
        self._barrier()
        return last

    def _barrier(self):
        """With several workers, waits until every worker gets here (after the chief's last evaluation and save),
        so that all leave `train` together and none waits for the others in TensorFlow's shutdown."""
        if self.worker.is_multi:
            self._boundaries += 1
            self._from_every_worker([int(self.step.numpy())])

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


def gradient_norm(grads, replica_context=None):
    """Scalar: the global norm of the gradient the optimizer applies, the replicas' sum when there are several
    (one all-reduce of the whole gradient)."""
    if replica_context is not None and replica_context.num_replicas_in_sync > 1:
        grads = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return tf.linalg.global_norm(grads)


def clip_by_global_norm(grads, clip_norm, norm=None):
    """The gradients scaled by min(1, clip_norm / ‖g‖), ‖g‖ the global norm of the step's whole gradient.

    `norm` is ‖g‖ from `gradient_norm` (computed from `grads` when None, for a single replica). With several
    replicas it must be the norm of the replicas' summed gradient (what the optimizer applies), so every replica
    scales by the same factor and the applied sum is clipped exactly. Keras' own `global_clipnorm` clips each
    replica's share before the sum, which is a different rule. A non-finite norm leaves the gradients to the
    non-finite check, which skips the update. `clip_norm` 0 returns the gradients untouched.
    """
    if not clip_norm:
        return grads
    if norm is None:
        norm = gradient_norm(grads)
    scale = tf.where(norm > clip_norm, clip_norm / norm, 1.0)
    return [g * tf.cast(scale, g.dtype) for g in grads]


def _all_finite(loss, grads):
    """Scalar bool: the loss and every gradient entry are finite."""
    finite = tf.math.is_finite(loss)
    for g in grads:
        finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
    return finite


def _checkpoint_number(path):
    """The number of a CheckpointManager checkpoint path ('.../ckpt-4000' → 4000; the trainer numbers checkpoints
    by step), or −1 for None."""
    if path is None:
        return -1
    return int(os.path.basename(path).rpartition("-")[2])


def _next_multiple(step, every):
    return (step // every + 1) * every
