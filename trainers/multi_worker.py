"""Training on several machines: the cluster from TF_CONFIG, `MultiWorkerMirroredStrategy` with bounded waits, and
the collectives the trainer uses to keep workers in step (BUILD.md "Multi-worker").

Every worker runs the same `sqair-train` command with its own TF_CONFIG, TensorFlow's cluster description:

    {"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 1}}

(an optional "chief" job of one address makes that task the chief; otherwise worker 0 is). Worker w is replica w
of the strategy (one device per worker; with several local devices, replicas w·L … w·L + L − 1), reads data
pipeline w of `data_pipelines.dataset` and samples with the per-replica seed of `trainers.trainer`.

What can go wrong on a cluster, and the bound on each (`Timeouts`):
- a worker never starts: the others stop after `startup` seconds (the coordination service's register barrier;
  without it TensorFlow waits forever, and ignores SIGTERM while it waits);
- a worker dies or its machine goes silent: the coordination service stops hearing its heartbeat and aborts every
  collective after `heartbeat` seconds (sooner when a transfer from the dead process was under way: its closed
  connection fails that transfer at once);
- a worker is alive but stuck (a hung filesystem, a deadlock): `StallWatchdog` aborts the collectives of a worker
  that has seen no training step and no loop boundary for `stall` seconds.

Not `CommunicationOptions(timeout_seconds=...)` for the last: in TF 2.21 every collective launched with a timeout
holds two threads until its timeout has run out, whether it finished or not (measured: 2 threads per all-reduce,
released only after the timeout). A training step here runs about a dozen collectives: with a 600 s timeout a
`debug` run grew by ~24 threads per step and died of thread exhaustion ("Resource temporarily unavailable") at
step ~670, about a minute in; at one step per second it would hold ~14,000 threads.

This module is imported by the launcher (`trainers.cluster`), which must start without TensorFlow, so TensorFlow
is imported inside the functions that need it.
"""

import dataclasses
import hashlib
import json
import os
import re
import signal
import tempfile
import threading
import time
from typing import Tuple

_JOBS = ("chief", "worker")  # The jobs MultiWorkerMirroredStrategy trains with, in its replica order.


class ClusterConfigError(ValueError):
    """TF_CONFIG (or the flags that go with it) cannot describe a cluster this trainer can run on."""


class ClusterStartError(RuntimeError):
    """Not every worker joined the cluster within the startup timeout; starting them all again is the remedy."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The training cluster of TF_CONFIG and this process's place in it.

    Attributes:
      chief: the address of the chief task ('host:port'), or '' when worker 0 is the chief.
      workers: the addresses of the worker tasks, in TF_CONFIG's order.
      task_type: 'chief' or 'worker': this process's job.
      task_index: this process's index within its job.
    """

    chief: str
    workers: Tuple[str, ...]
    task_type: str
    task_index: int

    @property
    def addresses(self):
        """Every training task's address in replica order (the chief first)."""
        return ((self.chief,) if self.chief else ()) + tuple(self.workers)

    @property
    def num_workers(self):
        return len(self.addresses)

    @property
    def rank(self):
        """This task's position in `addresses`: its worker index and its input pipeline id."""
        return self.task_index + (1 if self.chief and self.task_type == "worker" else 0)

    @property
    def is_chief(self):
        return self.rank == 0

    def to_tf_config(self):
        """The TF_CONFIG JSON string of this task."""
        cluster = {"worker": list(self.workers)}
        if self.chief:
            cluster["chief"] = [self.chief]
        return json.dumps({"cluster": cluster, "task": {"type": self.task_type, "index": self.task_index}})


def parse_tf_config(text):
    """The `Cluster` of a TF_CONFIG string; ClusterConfigError names the first thing that is wrong."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ClusterConfigError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict) or not isinstance(
            value.get("task"), dict):
        raise ClusterConfigError('TF_CONFIG must be a JSON object with "cluster" and "task" objects, e.g. '
                                 '{"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
                                 '"task": {"type": "worker", "index": 0}}')
    cluster, task = value["cluster"], value["task"]
    other = sorted(set(cluster) - set(_JOBS))
    if other:
        raise ClusterConfigError(f"TF_CONFIG names jobs {other}; sqair-train trains with 'chief' and 'worker' "
                                 "tasks only (no parameter servers or evaluators)")
    jobs = {}
    for job in _JOBS:
        addresses = cluster.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ClusterConfigError(f'TF_CONFIG cluster "{job}" must be a list of "host:port" strings, got '
                                     f"{addresses!r}")
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ClusterConfigError(f'TF_CONFIG {job} address {address!r} is not "host:port"')
        jobs[job] = tuple(addresses)
    if len(jobs["chief"]) > 1:
        raise ClusterConfigError(f"TF_CONFIG names {len(jobs['chief'])} chiefs; a cluster has at most one")
    everyone = jobs["chief"] + jobs["worker"]
    if not everyone:
        raise ClusterConfigError('TF_CONFIG names no tasks: give "worker" (and optionally "chief") addresses')
    duplicates = sorted({a for a in everyone if everyone.count(a) > 1})
    if duplicates:
        raise ClusterConfigError(f"TF_CONFIG names {duplicates} more than once: every task needs its own address")
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in _JOBS or task_type not in cluster:
        raise ClusterConfigError(f"TF_CONFIG task type {task_type!r} is not one of the cluster's jobs "
                                 f"{sorted(j for j in _JOBS if jobs[j])}")
    if not isinstance(task_index, int) or isinstance(task_index, bool) or not 0 <= task_index < len(jobs[task_type]):
        raise ClusterConfigError(f"TF_CONFIG task index {task_index!r} is not an index of the "
                                 f"{len(jobs[task_type])} {task_type} address(es)")
    return Cluster(chief=jobs["chief"][0] if jobs["chief"] else "", workers=jobs["worker"], task_type=task_type,
                   task_index=task_index)


def cluster_from_environment(environ=None):
    """The `Cluster` of the TF_CONFIG environment variable, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    return parse_tf_config(text) if text else None


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """How long a worker waits for the others before it stops with an error (module docstring), in seconds.

    Attributes:
      startup: for every worker to join at start (the coordination service's register barrier).
      heartbeat: without a heartbeat from a worker before it is declared dead and every collective is aborted.
      stall: without a completed training step or loop boundary on this worker (`StallWatchdog`). It must exceed
        the longest legitimate pause: the chief's held-out evaluation and image summaries (the others wait for it
        at the next loop boundary), a checkpoint on a slow filesystem, the first step's XLA compilation.
    """

    startup: float = 600.0
    heartbeat: float = 30.0
    stall: float = 900.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ClusterConfigError(f"the {field.name} timeout must be a positive number of seconds, "
                                         f"got {value!r}")


def create_strategy(cluster, timeouts=Timeouts()):
    """`MultiWorkerMirroredStrategy` for `cluster` with bounded waits; call before any other TensorFlow op.

    The coordination service's settings have no public API: `configure_coordination_service` (which the strategy
    itself calls with TensorFlow's defaults when nothing is configured yet) is the only place to set the heartbeat
    and register timeouts, and the register barrier is what makes the startup timeout apply at all.
    """
    import tensorflow as tf
    from tensorflow.python.eager import context

    leader = f"/job:{'chief' if cluster.chief else 'worker'}/replica:0/task:0"
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader,
        cluster_register_timeout_in_ms=int(timeouts.startup * 1000),
        heartbeat_timeout_in_ms=int(timeouts.heartbeat * 1000),
        # Workers leave together (the trainer ends with a barrier); a worker that cannot reach the others at exit
        # should not wait longer than it would for a dead one.
        shutdown_barrier_timeout_in_ms=int(timeouts.heartbeat * 1000))
    context.context().coordination_service.cluster_register_with_barrier = True
    jobs = {"worker": list(cluster.workers)}
    if cluster.chief:
        jobs["chief"] = [cluster.chief]
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(jobs), task_type=cluster.task_type, task_id=cluster.task_index, rpc_layer="grpc")
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)  # No per-collective timeout.
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:  # The register barrier timed out.
        text = str(getattr(e, "message", e))
        missing = re.findall(r"^(/job:\w+/replica:\d+/task:\d+)$", text.split("timed out task names:", 1)[-1],
                             re.MULTILINE) if "timed out task names:" in text else []
        who = f"{', '.join(missing)} did not join" if missing else failure_reason(e)
        raise ClusterStartError(
            f"the cluster did not start within the startup timeout ({timeouts.startup:g} s): {who}. Start every "
            "worker (each with its own TF_CONFIG) within --startup-timeout seconds of the first") from None
    # TensorFlow's multi-worker runtime installs a SIGTERM handler of its own (for its preemption notices, unused
    # here), after which SIGTERM no longer stops the process (measured). Until `Trainer.train` takes the signal
    # over, the default action applies again: a worker stopped during start-up has nothing to save.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return strategy


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's place among the training workers (one worker, the chief, outside a multi-worker run).

    Attributes:
      rank: the worker's index in replica order (0 = the chief).
      num_workers: workers taking part in training.
      address: the worker's 'host:port' ('' outside a cluster).
    """

    rank: int = 0
    num_workers: int = 1
    address: str = ""

    @property
    def is_chief(self):
        """The chief writes the run directory (config.json, checkpoints, TensorBoard) and reports progress."""
        return self.rank == 0

    @property
    def is_multi(self):
        return self.num_workers > 1

    @classmethod
    def of(cls, strategy):
        """The worker of `strategy`: its cluster resolver's task for `MultiWorkerMirroredStrategy`."""
        import tensorflow as tf

        resolver = getattr(strategy, "cluster_resolver", None)
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
            return cls()
        spec = resolver.cluster_spec().as_dict()
        if not spec:  # A MultiWorkerMirroredStrategy without TF_CONFIG trains on this machine alone.
            return cls()
        chief = tuple(spec.get("chief", ()))
        addresses = chief + tuple(spec.get("worker", ()))
        rank = resolver.task_id + (len(chief) if resolver.task_type == "worker" else 0)
        return cls(rank=rank, num_workers=len(addresses), address=addresses[rank])


def fingerprint(config, train_manifest):
    """A 63-bit hash of what every worker must share: the whole training config except the data directory's path
    (machines may mount the data in different places), and the training data's shards (names, sizes, SHA-256s).

    Execution settings are included: steps_per_loop, checkpoint_every, eval_every and total_steps decide where the
    loop boundaries, and with them the collectives, fall, so two workers that differ in them would wait for each
    other at different points.
    """
    values = config.to_dict()
    values.pop("data_dir")
    shards = [{key: shard.get(key) for key in ("file", "bytes", "sha256", "num_sequences")}
              for shard in train_manifest["shards"]]
    text = json.dumps({"config": values, "train_shards": shards}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def temp_checkpoint_dir(workdir, rank):
    """Where worker `rank` (not the chief) writes its throw-away checkpoint copies: a directory on the worker's own
    disk, named after the run, so that a copy left by a crash is found and removed at the next start, and the
    N − 1 copies never reach the shared filesystem the run directory lives on."""
    digest = hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"sqair-train-{digest}-worker{rank}")


class StallWatchdog:
    """Aborts this worker's collectives when the run stops moving for `timeout` seconds, so that a worker that
    hangs alive (its heartbeat goes on) stops every other worker with an error instead of blocking them forever.

    `progress` is called every few seconds from the watchdog's thread and returns anything that changes when the
    run moves (the trainer's: the step counter and the count of loop boundaries passed). A stalled worker's
    waiting collectives fail with DeadlineExceeded naming the timeout; a worker cannot run collectives after that,
    so the trainer stops (`trainer.ClusterError`). Use as a context manager around the code that runs collectives.
    """

    def __init__(self, timeout, progress):
        self.timeout = float(timeout)
        self.fired = False
        self._progress = progress
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="sqair-stall-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _watch(self):
        import tensorflow as tf
        from tensorflow.python.eager import context

        marker, since = self._progress(), time.monotonic()
        while not self._stop.wait(min(5.0, self.timeout / 10)):
            now, current = time.monotonic(), self._progress()
            if current != marker:
                marker, since = current, now
            elif now - since > self.timeout:
                self.fired = True
                # TensorFlow's own multi-worker health check stops a cluster the same way.
                context.context().abort_collective_ops(
                    tf.errors.DEADLINE_EXCEEDED, f"no training progress on this worker for {self.timeout:g} s (the "
                    "stall timeout): a worker hangs without failing, or waits for one that does")
                return


def failure_reason(error):
    """The informative line of a TensorFlow error from a failed collective (its message starts with the graph
    node and a stack; the cause is on the line after 'aborted by:' or in the first line that names it)."""
    text = str(getattr(error, "message", error))
    if "aborted by: " in text:
        text = text.split("aborted by: ", 1)[1]
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "Additional GRPC", ":UNKNOWN:", "RPC:")
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line and not line.startswith(skip):
            if line.endswith(":") and i + 1 < len(lines) and lines[i + 1]:  # "... unhealthy: / <the tasks>"
                line += " " + lines[i + 1]
            return f"{type(error).__name__}: {line}"
    return type(error).__name__
