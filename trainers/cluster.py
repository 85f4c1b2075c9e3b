"""`sqair-train-cluster`: multi-worker training on one machine, to try it (or test it) before a real cluster.

    sqair-train-cluster --workers 2 -- --workdir runs/mw --preset fast --data data/mnist
    sqair-train-cluster --workers 2 -- --workdir runs/mw            # resume, as sqair-train does
    sqair-train-cluster --workers 2 --cpus-per-worker 1 -- --workdir runs/mw --preset debug --data data/tiny

Starts N `sqair-train --strategy multi_worker ARGS` processes, each with the TF_CONFIG that names all N on free
localhost ports and its own task (worker 0 is the chief), and streams their output line by line, prefixed with
`[wI]`. Ctrl-C (or SIGTERM) is passed on to every worker, which save one checkpoint together and stop; a second
Ctrl-C kills them. When a worker fails, the others stop on their own within sqair-train's timeouts; after
--grace seconds any still running are killed. The exit status is 0 when every worker succeeded, otherwise the
status of the first worker that stopped with an error (130 or 143 after Ctrl-C or SIGTERM).

On a real cluster, run sqair-train itself on each machine with that machine's TF_CONFIG (README "Several
machines"); this launcher only plays the cluster on one machine.
"""

import argparse
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Tuple

from trainers import multi_worker


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """What `launch` starts.

    Attributes:
      num_workers: worker processes (≥ 1); worker 0 is the chief.
      train_args: the sqair-train arguments every worker gets (`--strategy multi_worker` is added).
      cpus_per_worker: pin worker i to its own CPUs [i·c, (i+1)·c) of the ones this process may use; 0 = every
        worker may use every CPU.
      grace_seconds: after a Ctrl-C, a SIGTERM or a worker's failure, how long the other workers get to save or
        to notice the failure before they are killed.
      host: the address the workers listen on (loopback by default: nothing is reachable from outside).
    """

    num_workers: int
    train_args: Tuple[str, ...]
    cpus_per_worker: int = 0
    grace_seconds: float = 120.0
    host: str = "localhost"

    def __post_init__(self):
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.num_workers}")
        if self.cpus_per_worker < 0:
            raise ValueError(f"--cpus-per-worker must be ≥ 0, got {self.cpus_per_worker}")
        if not self.grace_seconds > 0:
            raise ValueError(f"--grace must be a positive number of seconds, got {self.grace_seconds}")
        if not self.train_args:
            raise ValueError("no sqair-train arguments: give them after --, e.g. "
                             "sqair-train-cluster --workers 2 -- --workdir runs/mw --preset fast --data data/mnist")
        for i, arg in enumerate(self.train_args):
            value = arg.split("=", 1)[1] if arg.startswith("--strategy=") else (
                self.train_args[i + 1] if arg == "--strategy" and i + 1 < len(self.train_args) else None)
            if value is not None and value not in ("multi_worker", "auto"):
                raise ValueError(f"the workers train with --strategy multi_worker; remove --strategy {value}")


def free_ports(count, host="localhost"):
    """`count` distinct TCP ports free on `host` now (held open together so none is given twice; another program
    could still take one before a worker binds it, in which case that worker fails at start)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def clusters(num_workers, host="localhost", ports=None):
    """The `multi_worker.Cluster` of each of `num_workers` local workers (worker 0 is the chief)."""
    ports = ports or free_ports(num_workers, host)
    addresses = tuple(f"{host}:{port}" for port in ports)
    return [multi_worker.Cluster(chief="", workers=addresses, task_type="worker", task_index=i)
            for i in range(num_workers)]


def _cpu_sets(num_workers, cpus_per_worker):
    """The CPUs of each worker, or None for no pinning; ValueError when there are not enough."""
    if not cpus_per_worker:
        return [None] * num_workers
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("--cpus-per-worker needs CPU affinity (Linux); leave it out on this system")
    available = sorted(os.sched_getaffinity(0))
    if num_workers * cpus_per_worker > len(available):
        raise ValueError(f"--workers {num_workers} × --cpus-per-worker {cpus_per_worker} needs "
                         f"{num_workers * cpus_per_worker} CPUs; this process may use {len(available)}")
    return [set(available[i * cpus_per_worker:(i + 1) * cpus_per_worker]) for i in range(num_workers)]


class _Streams:
    """Copies the workers' output to ours line by line with a `[wI] ` prefix (carriage returns, which progress
    bars redraw with, also end a line), so the lines of different workers never interleave mid-line."""

    def __init__(self, out, err):
        self._lock = threading.Lock()
        self._targets = {"out": out, "err": err}
        self._threads = []

    def follow(self, index, stream, target):
        thread = threading.Thread(target=self._copy, args=(index, stream, self._targets[target]), daemon=True)
        thread.start()
        self._threads.append(thread)

    def say(self, text, target="err"):
        with self._lock:
            print(f"[launcher] {text}", file=self._targets[target], flush=True)

    def _copy(self, index, stream, target):
        pending = b""
        for chunk in iter(lambda: stream.read1(65536), b""):
            pending += chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            *lines, pending = pending.split(b"\n")
            self._write(index, lines, target)
        self._write(index, [pending] if pending.strip() else [], target)

    def _write(self, index, lines, target):
        lines = [line for line in lines if line.strip()]
        if lines:
            with self._lock:
                for line in lines:
                    target.write(f"[w{index}] {line.decode('utf-8', 'replace')}\n")
                target.flush()

    def join(self, timeout=5.0):
        for thread in self._threads:
            thread.join(timeout)


def _status(returncode):
    """A process's exit status as a shell reports it (128 + N for a process killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode):
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return "done" if returncode == 0 else f"exit status {returncode}"


def launch(config, out=None, err=None):
    """Runs the workers of `config` to the end; returns the exit status (module docstring)."""
    out, err = out or sys.stdout, err or sys.stderr
    cpu_sets = _cpu_sets(config.num_workers, config.cpus_per_worker)
    tasks = clusters(config.num_workers, config.host)
    args = list(config.train_args)
    if not any(a == "--strategy" or a.startswith("--strategy=") for a in args):
        args += ["--strategy", "multi_worker"]
    streams = _Streams(out, err)
    procs = []
    # Every worker is started before any thread exists: `preexec_fn` (the CPU pinning) is unsafe with threads.
    for task, cpus in zip(tasks, cpu_sets):
        env = dict(os.environ, TF_CONFIG=task.to_tf_config(), PYTHONUNBUFFERED="1")
        pin = (lambda cpus=cpus: os.sched_setaffinity(0, cpus)) if cpus else None
        # A session of its own: a Ctrl-C in the terminal reaches the launcher only, which passes it on once.
        procs.append(subprocess.Popen([sys.executable, "-m", "trainers.train", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                      preexec_fn=pin))
    for i, (proc, task, cpus) in enumerate(zip(procs, tasks, cpu_sets)):
        pinned = f", CPUs {sorted(cpus)}" if cpus else ""
        streams.say(f"worker {i}{' (chief)' if i == 0 else ''}: pid {proc.pid}, {task.addresses[i]}{pinned}")
        streams.follow(i, proc.stdout, "out")
        streams.follow(i, proc.stderr, "err")

    signals = []
    previous = {signum: signal.signal(signum, lambda signum, _: signals.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    forwarded, deadline, failures = 0, None, []  # failures: (worker, returncode) in the order they stopped
    try:
        while [p.poll() for p in procs].count(None):  # Polls every worker (`poll` sets `returncode`).
            if len(signals) > forwarded:  # Pass each new signal on; a second one kills.
                signum = signals[forwarded]
                forwarded += 1
                if forwarded == 1:
                    streams.say(f"{signal.Signals(signum).name}: passed on to the workers, which save and stop "
                                f"(another Ctrl-C kills them)")
                    _signal_all(procs, signum)
                    deadline = deadline or time.monotonic() + config.grace_seconds
                else:
                    streams.say("killing the workers")
                    _signal_all(procs, signal.SIGKILL)
            for i in _new_failures(procs, failures):
                if not forwarded:
                    streams.say(f"worker {i} stopped ({_describe(procs[i].returncode)}); the others stop within "
                                f"their timeouts (or are killed in {config.grace_seconds:g} s)")
                    deadline = deadline or time.monotonic() + config.grace_seconds
            if deadline is not None and time.monotonic() > deadline:
                late = [i for i, p in enumerate(procs) if p.poll() is None]
                streams.say(f"worker(s) {late} still running {config.grace_seconds:g} s later: killing them")
                _signal_all(procs, signal.SIGKILL)
                deadline = None
            time.sleep(0.1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _signal_all(procs, signal.SIGKILL)  # Nothing outlives the launcher, whatever happened to it.
        for proc in procs:
            proc.wait()
        streams.join()
    _new_failures(procs, failures)  # Workers that the final SIGKILL stopped.
    streams.say(", ".join(f"worker {i}: {_describe(p.returncode)}" for i, p in enumerate(procs)),
                "out" if not failures else "err")
    return _status(failures[0][1]) if failures else 0


def _new_failures(procs, failures):
    """Appends (worker, returncode) to `failures` for each worker that has stopped with a failure since the last
    call (`failures` keeps the order they stopped in); returns the new workers' indices."""
    new = [i for i, proc in enumerate(procs)
           if proc.returncode not in (None, 0) and all(i != w for w, _ in failures)]
    failures.extend((i, procs[i].returncode) for i in new)
    return new


def _signal_all(procs, signum):
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:  # Exited between the poll and the signal.
                pass


def _parser():
    parser = argparse.ArgumentParser(
        prog="sqair-train-cluster", usage="sqair-train-cluster [-h] --workers N [options] -- SQAIR_TRAIN_ARGS...",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, required=True, metavar="N",
                        help="number of worker processes to start (≥ 1); worker 0 is the chief, which writes the "
                             "run directory and the progress")
    parser.add_argument("--cpus-per-worker", type=int, default=0, metavar="C",
                        help="pin each worker to C CPUs of its own (Linux), so N workers share the machine as N "
                             "machines of C cores would; default 0: every worker may use every CPU")
    parser.add_argument("--grace", type=float, default=120.0, metavar="SECONDS",
                        help="after Ctrl-C, SIGTERM or a worker's failure, how long the other workers get to save "
                             "or stop on their own before they are killed (default 120)")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = _parser()
    args = parser.parse_args(own)
    try:
        config = LaunchConfig(num_workers=args.workers, train_args=tuple(train_args),
                              cpus_per_worker=args.cpus_per_worker, grace_seconds=args.grace)
        return launch(config)
    except ValueError as e:
        print(f"sqair-train-cluster: error: {e}", file=sys.stderr)
        return 2


def run():
    """Console entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
