"""Multi-worker training (MultiWorkerMirroredStrategy): real worker processes on loopback, real TF_CONFIG, real
checkpoints (BUILD.md "Multi-worker").

- a SIGTERM on one worker stops both at the same step with one checkpoint; a killed worker stops the other with an
  error within 60 s; a restart resumes from the last checkpoint and finishes, leaving no worker copies behind;
- through all of that, 2 workers × 1 CPU end where one process on one CPU ends that computes from the same two
  input pipelines with the same per-replica seeds, to float32 rounding (and far from where it ends with the
  pipelines swapped);
- a worker started with another config is refused, naming the field; malformed cluster descriptions are refused;
- Ctrl-C on `sqair-train-cluster` reaches every worker, which save one checkpoint and stop;
- a worker whose peer never starts stops after the startup timeout with one line; the stall watchdog aborts a
  collective that cannot complete, and leaves a run that moves alone.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from trainers import cluster
from trainers import multi_worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Settings that keep a debug run to one compiled loop (one curriculum length) and cheap loop boundaries.
ONE_LENGTH = ["--set", "curriculum_stage_steps=100000", "--set", "eval_every=100000", "--no-progress"]


def _env(tmp_path, **extra):
    """The workers' environment: their temporary directory is the test's, so leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, TMPDIR=str(tmp), **extra)


def _start_cluster(tmp_path, name, train_args, workers=2):
    """Starts `sqair-train-cluster`; returns (process, path of its merged output)."""
    log = tmp_path / f"{name}.log"
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "trainers.cluster", "--workers", str(workers),
                             "--cpus-per-worker", "1", "--", *train_args], cwd=REPO, env=_env(tmp_path),
                            stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc, log


def _pids(log):
    """Worker index → pid, from the launcher's start lines."""
    text = log.read_text()
    return {int(i): int(pid) for i, pid in re.findall(r"\[launcher\] worker (\d+)(?: \(chief\))?: pid (\d+)", text)}


def _worker_lines(log, index):
    prefix = f"[w{index}] "
    return [line[len(prefix):] for line in log.read_text().splitlines() if line.startswith(prefix)]


def _checkpoints(workdir):
    return sorted(int(p.rsplit("-", 1)[1].split(".")[0]) for p in glob.glob(os.path.join(workdir, "checkpoints",
                                                                                          "ckpt-*.index")))


def _wait_for(predicate, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"the cluster stopped before {what}"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _leftovers(tmp_path, workdir):
    """Temporary worker checkpoint copies left anywhere the test can see."""
    return (glob.glob(str(tmp_path / "tmp" / "sqair-train-*"))
            + [p for p in os.listdir(os.path.join(workdir, "checkpoints"))
               if not re.fullmatch(r"checkpoint|ckpt-\d+\.(index|data-\d+-of-\d+)", p)])


# One process on one CPU, as each worker has: per step s, replica r's gradient (the trainer's compiled forward and
# backward) on the next batch of input pipeline r XOR swap of 2 with the seed of replica r, the two summed, one
# update; then the largest difference from the weights and optimizer slots of the multi-worker run's checkpoint.
# swap = 1 first, then the same trainer is reset to its initial state for swap = 0 (one trace for both).
ONE_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from data_pipelines import dataset as dataset_lib
    from trainers import trainer as trainer_lib

    run_dir, ref_dir = sys.argv[1:3]
    run = trainer_lib.Trainer(None, run_dir, progress=False, log=lambda *a: None)  # Restores the last step.
    cfg, steps = run.config, int(run.step.numpy())
    ref = trainer_lib.Trainer(cfg, ref_dir, progress=False, log=lambda *a: None)  # The seeded initial weights.
    variables = ref.model.weights + ref.optimizer.variables
    initial = [v.numpy() for v in variables]
    update = tf.function(lambda grads: ref.optimizer.apply_gradients(zip(grads, ref.model.trainable_variables)))
    result = {"steps": steps, "compared": len(variables)}
    for swap in (1, 0):
        for v, value in zip(variables, initial):
            v.assign(value)
        pipelines = [iter(dataset_lib.build_dataset(ref.train_data_config(), tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=r, num_replicas_in_sync=2))[0]) for r in (0, 1)]
        for step in range(steps):
            seq_len = cfg.seq_len(step, ref.data_len)
            grads = None
            for replica in (0, 1):
                batch = next(pipelines[replica ^ swap])
                seed = tf.random.experimental.stateless_fold_in(trainer_lib.training_step_seed(cfg.seed, step),
                                                                replica)
                _, g, _ = ref._grad_fn(batch["frames"][:, :seq_len], batch["count"], seed)
                grads = g if grads is None else [a + b for a, b in zip(grads, g)]
            update(grads)
        result[f"max_diff_swap{swap}"] = max(float(np.max(np.abs(a.numpy() - b.numpy())))
                                            for a, b in zip(run.model.weights + run.optimizer.variables, variables))
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_two_workers_through_a_preemption_a_crash_and_a_restart_end_where_one_process_does(debug_data, tmp_path):
    workdir = str(tmp_path / "run")
    # --heartbeat-timeout 10 (default 30) only shortens the test: the bound checked below is the target's 60 s.
    args = ["--workdir", workdir, "--preset", "debug", "--data", debug_data, "--set", "checkpoint_every=2",
            "--heartbeat-timeout", "10", *ONE_LENGTH]

    # 1. SIGTERM (a preemption notice) to the non-chief only: both agree at the next loop boundary, save one
    #    checkpoint together and stop with 143, as one machine does.
    proc, log = _start_cluster(tmp_path, "preempted", [*args, "--steps", "100000"])
    _wait_for(lambda: _checkpoints(workdir) and len(_pids(log)) == 2, proc, 240, "the first checkpoint")
    os.kill(_pids(log)[1], signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    stops = [next(line for line in _worker_lines(log, w) if line.startswith("interrupted:")) for w in (0, 1)]
    saved = int(re.search(r"at step (\d+);", stops[0]).group(1))
    assert f"ckpt-{saved} at step {saved}" in stops[1] and all("by SIGTERM on worker(s) 1" in s for s in stops)
    assert _checkpoints(workdir)[-1] == saved

    # 2. Both resume from that checkpoint; a worker killed outright stops the other with an error within 60 s.
    proc, log = _start_cluster(tmp_path, "killed", [*args, "--steps", "100000"])
    _wait_for(lambda: _checkpoints(workdir)[-1] > saved and len(_pids(log)) == 2, proc, 240, "a new checkpoint")
    os.kill(_pids(log)[1], signal.SIGKILL)
    killed = time.monotonic()
    status = proc.wait(timeout=180)
    assert time.monotonic() - killed < 60, "the surviving worker took more than 60 s to stop"
    assert status == 128 + signal.SIGKILL, log.read_text()[-3000:]  # The first worker to stop, as the shell says.
    for w in (0, 1):
        assert f"resumed from {workdir}/checkpoints/ckpt-{saved} at step {saved}" in _worker_lines(log, w)
    chief = "\n".join(_worker_lines(log, 0))
    assert "sqair-train: error: worker 0 of 2 lost the cluster at step" in chief, chief[-3000:]
    assert "Start every worker again: they resume from" in chief
    assert "[launcher] worker 0: exit status 1, worker 1: killed by SIGKILL" in log.read_text()
    assert "still running" not in log.read_text()  # It stopped on its own; the launcher killed nothing.

    # 3. A restart resumes from the last checkpoint (at most the steps since it are lost) and finishes, leaving
    #    the chief's checkpoints only.
    last = _checkpoints(workdir)[-1]
    proc, log = _start_cluster(tmp_path, "restarted", [*args, "--steps", str(last + 2)])
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    for w in (0, 1):
        assert f"resumed from {workdir}/checkpoints/ckpt-{last} at step {last}" in _worker_lines(log, w)
    assert f"done at step {last + 2:,}" in "\n".join(_worker_lines(log, 0))
    assert f"worker 1: done at step {last + 2:,}" in _worker_lines(log, 1)
    assert _checkpoints(workdir)[-1] == last + 2 and not _leftovers(tmp_path, workdir)
    # Only the chief wrote TensorBoard (one file per writer and run start).
    assert [len(os.listdir(os.path.join(workdir, "tensorboard", d))) for d in ("train", "eval")] == [3, 3]

    # 4. Through all of it, the weights are those of one process on one CPU that takes, per step, the next
    #    batch of input pipeline r (of 2) with replica r's seed for r = 0, 1 and applies the summed gradients: the
    #    multi-worker global batch is two per-replica batches from two shard sets, its noise two seeds, and a
    #    resume repeats nothing and skips nothing.
    cpu = sorted(os.sched_getaffinity(0))[:1]
    out = subprocess.run([sys.executable, "-c", ONE_PROCESS, workdir, str(tmp_path / "ref")], cwd=REPO,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: os.sched_setaffinity(0, cpu))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["steps"] == last + 2 and result["compared"] > 30
    # The same kernels on one core, a sum of two gradients, the same update: bit for bit in 4 of 5 runs, 4.8e-7 in
    # the fifth (the largest difference over every weight and optimizer slot); a wrong seed, batch or resume moves
    # them by orders of magnitude more (the swapped pipelines: 13).
    assert result["max_diff_swap0"] <= 1e-5, result
    # The comparison can tell: with each worker's data given to the other replica, the weights differ.
    assert result["max_diff_swap1"] > 1e-4, result


@pytest.mark.slow
def test_a_worker_with_another_config_is_refused_naming_the_field(debug_data, tmp_path):
    workdir = str(tmp_path / "run")
    # No --strategy: `auto` must choose multi_worker from a TF_CONFIG of two workers (alone, each would train).
    args = [sys.executable, "-m", "trainers.train", "--workdir", workdir, "--preset", "debug", "--data", debug_data,
            "--startup-timeout", "120", "--no-progress"]
    tasks = cluster.clusters(2)
    procs = [subprocess.Popen(args + (["--set", "learning_rate=0.002"] if task.rank else []), cwd=REPO,
                              env=_env(tmp_path, TF_CONFIG=task.to_tf_config()), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for task in tasks]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outs
    chief_err, worker_err = outs[0][1], outs[1][1]
    assert ("sqair-train: error: worker 1 was started with a config other than the chief's (learning_rate: 0.001 "
            "on the chief, 0.002 here)") in worker_err
    assert "sqair-train: error: worker(s) 1 started with a config or data other than the chief's" in chief_err
    assert "Traceback" not in chief_err + worker_err
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))  # Refused before anything was trained.


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', 'must be a JSON object with "cluster" and "task"'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', "['ps']"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "'a' is not \"host:port\""),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "more than once"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "task index 1 is not an index"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task type 'chief' is not"),
    ('{"cluster": {"chief": ["a:1", "b:2"], "worker": []}, "task": {"type": "chief", "index": 0}}', "2 chiefs"),
])
def test_malformed_tf_config_is_refused_with_the_reason(text, message):
    with pytest.raises(multi_worker.ClusterConfigError, match=re.escape(message)):
        multi_worker.parse_tf_config(text)


def test_tf_config_ranks_put_the_chief_first_and_round_trip():
    spec = {"cluster": {"chief": ["c:1"], "worker": ["w0:2", "w1:3"]}, "task": {"type": "worker", "index": 1}}
    task = multi_worker.parse_tf_config(json.dumps(spec))
    assert (task.addresses, task.num_workers, task.rank, task.is_chief) == (("c:1", "w0:2", "w1:3"), 3, 2, False)
    assert multi_worker.parse_tf_config(task.to_tf_config()) == task
    local = cluster.clusters(3, ports=[5000, 5001, 5002])
    assert [(t.rank, t.is_chief, t.addresses[t.rank]) for t in local] == [
        (0, True, "localhost:5000"), (1, False, "localhost:5001"), (2, False, "localhost:5002")]
    with pytest.raises(multi_worker.ClusterConfigError, match="the stall timeout must be a positive number"):
        multi_worker.Timeouts(stall=0)


def test_bad_launcher_and_strategy_arguments_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    def launcher(*argv):  # The launcher's refusals, before any worker starts (it does not import TensorFlow).
        out = subprocess.run([sys.executable, "-m", "trainers.cluster", *argv], cwd=REPO, env=_env(tmp_path),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        return out.stderr

    assert "--workers must be at least 1, got 0" in launcher("--workers", "0", "--", "--workdir", "x")
    assert "no sqair-train arguments: give them after --" in launcher("--workers", "2")
    assert "remove --strategy mirrored" in launcher("--workers", "2", "--", "--workdir", "x", "--strategy", "mirrored")
    assert "needs 4096 CPUs" in launcher("--workers", "2", "--cpus-per-worker", "2048", "--", "--workdir", "x")

    from trainers import train

    def trainer(tf_config, *argv):  # sqair-train's refusals happen before a strategy exists: in this process.
        monkeypatch.setenv("TF_CONFIG", tf_config)
        status = train.main(["--workdir", str(tmp_path / "run"), "--preset", "debug", "--data", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("sqair-train: error: ") and len(err.splitlines()) == 1, err
        return err

    assert "TF_CONFIG is not valid JSON" in trainer('{"cluster": ')
    two = json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}})
    assert "names 2 workers but --strategy default trains on one machine" in trainer(two, "--strategy", "default")
    assert "--strategy multi_worker needs TF_CONFIG" in trainer("", "--strategy", "multi_worker")
    assert "the heartbeat timeout must be a positive number" in trainer(two, "--heartbeat-timeout", "0")


def test_stall_watchdog_aborts_a_hanging_collective_and_spares_a_moving_run():
    """`StallWatchdog` on a real collective that can never complete (a group of 2 with one member), in a fresh
    process because an abort leaves that process's collectives unusable."""
    script = textwrap.dedent("""
        import threading, time
        import tensorflow as tf
        from trainers import multi_worker

        moves = [0]
        with multi_worker.StallWatchdog(0.5, lambda: moves[0]) as moving:
            for _ in range(15):  # 1.5 s of work, three timeouts, with progress every 0.1 s.
                moves[0] += 1
                time.sleep(0.1)
        print("moving fired:", moving.fired)

        start = time.monotonic()
        try:
            with multi_worker.StallWatchdog(0.5, lambda: moves[0]) as stalled:
                tf.raw_ops.CollectiveReduceV2(input=tf.constant([1.0]), group_size=tf.constant(2),
                                              group_key=tf.constant(1), instance_key=tf.constant(1),
                                              ordering_token=[], merge_op="Add", final_op="Id")
            print("the collective returned")
        except tf.errors.DeadlineExceededError as e:
            print("stalled fired:", stalled.fired, "after", round(time.monotonic() - start, 1), "s:", e.message)
        """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "moving fired: False" in out.stdout
    fired = re.search(r"stalled fired: True after ([0-9.]+) s:.*no training progress on this worker for 0.5 s",
                      out.stdout)
    assert fired, out.stdout
    assert 0.5 <= float(fired.group(1)) < 10.0  # Not before the timeout, and not forever.


@pytest.mark.slow
def test_a_worker_whose_peer_never_starts_stops_after_the_startup_timeout_in_one_line(debug_data, tmp_path):
    ports = cluster.free_ports(2)
    tf_config = {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": 0}}
    workdir = tmp_path / "run"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "trainers.train", "--workdir", str(workdir), "--preset", "debug",
                          "--data", debug_data, "--startup-timeout", "5", "--no-progress"], cwd=REPO,
                         env=_env(tmp_path, TF_CONFIG=json.dumps(tf_config)), capture_output=True, text=True,
                         timeout=300)
    elapsed = time.monotonic() - start
    assert out.returncode == 1, out.stderr[-3000:]  # A cluster failure, not bad input: starting again is the fix.
    errors = [line for line in out.stderr.splitlines() if line.startswith("sqair-train: error:")]
    assert errors == ["sqair-train: error: the cluster did not start within the startup timeout (5 s): "
                      "/job:worker/replica:0/task:1 did not join. Start every worker (each with its own TF_CONFIG) "
                      "within --startup-timeout seconds of the first"]
    assert "Traceback" not in out.stderr and not workdir.exists()  # Nothing half-written.
    assert elapsed < 120  # The 5 s bound and the start-up, not TensorFlow's unbounded wait.


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_reaches_every_worker_which_save_and_stop(debug_data, debug_run, tmp_path):
    # The cluster starts from another run's weights (--init-from, step 2): every worker takes them.
    workdir = str(tmp_path / "run")
    proc, log = _start_cluster(tmp_path, "ctrl_c", ["--workdir", workdir, "--preset", "debug", "--data", debug_data,
                                                    "--init-from", debug_run, "--set", "checkpoint_every=2",
                                                    "--steps", "100000", *ONE_LENGTH])
    _wait_for(lambda: max(_checkpoints(workdir), default=0) > 2 and len(_pids(log)) == 2, proc, 240,
              "a trained checkpoint")
    proc.send_signal(signal.SIGINT)  # What a terminal sends the launcher's process on Ctrl-C.
    assert proc.wait(timeout=120) == 128 + signal.SIGINT, log.read_text()[-3000:]
    text = log.read_text()
    source = os.path.join(debug_run, "checkpoints", "ckpt-2")
    assert all(any(line.startswith(f"initialised from {source} at step 2") for line in _worker_lines(log, w))
               for w in (0, 1)), text[-3000:]
    assert "[launcher] SIGINT: passed on to the workers, which save and stop" in text
    stops = [next(line for line in _worker_lines(log, w) if line.startswith("interrupted:")) for w in (0, 1)]
    saved = int(re.search(r"at step (\d+);", stops[0]).group(1))
    assert all(f"ckpt-{saved}" in s for s in stops) and _checkpoints(workdir)[-1] == saved > 2
    assert "killing" not in text and not _leftovers(tmp_path, workdir)  # They stopped on their own, cleanly.
