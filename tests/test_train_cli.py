"""`sqair-train` end to end on the `debug` preset, and MirroredStrategy on two logical CPUs (subprocesses)."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from trainers import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _train(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "trainers.train", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_trains_resumes_and_refuses(debug_data, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    # 4 steps at L = 2, then 2 more at L = 3: each run traces one curriculum length's loop (~20 s each).
    done = _train("--workdir", workdir, "--preset", "debug", "--data", debug_data, "--steps", "4", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done at step 4" in done.stdout and "held-out counting accuracy" in done.stdout
    assert os.path.exists(os.path.join(workdir, "config.json"))
    assert os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-4.index"))
    assert os.listdir(os.path.join(workdir, "tensorboard", "train"))

    more = _train("--workdir", workdir, "--steps", "6", "--no-progress")  # Resume with the stored config.
    assert more.returncode == 0, more.stderr[-2000:]
    assert "resumed from" in more.stdout and "done at step 6" in more.stdout

    # The refusals, through the same `main` in this process (a process start each would only add TensorFlow's
    # import; `run` is `sys.exit(main())`).
    def refused_with(*args):
        assert train.main(list(args)) == 2
        return capsys.readouterr().err

    err = refused_with("--workdir", workdir, "--set", "batch_size=8", "--no-progress")
    assert "refusing to resume" in err and "batch_size: 4 in the run, 8 requested" in err
    err = refused_with("--workdir", str(tmp_path / "other"), "--preset", "debug", "--data", str(tmp_path / "nope"))
    assert err.startswith("sqair-train: error:") and len(err.strip().splitlines()) == 1
    err = refused_with("--workdir", str(tmp_path / "third"), "--preset", "debug", "--data", debug_data,
                       "--set", "learning_rat=1")
    assert "unknown config key 'learning_rat'" in err


@pytest.mark.slow
def test_corrupted_shard_is_refused_before_training_by_train_and_eval(debug_data, debug_run, tmp_path):
    import shutil

    data = str(tmp_path / "data")
    shutil.copytree(debug_data, data)
    shard = os.path.join(data, "train-00000-of-00001.tfrecord")
    with open(shard, "r+b") as f:  # Flipped bytes, same size: only a checksum tells.
        f.seek(os.path.getsize(shard) // 2)
        f.write(b"\xa5" * 32)
    workdir = str(tmp_path / "run")
    out = _train("--workdir", workdir, "--preset", "debug", "--data", data, "--no-progress")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"sqair-train: error: shard {shard} is corrupted" in out.stderr and "sqair-data verify" in out.stderr
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))

    test_shard = os.path.join(data, "test-00000-of-00001.tfrecord")
    shutil.copy(shard.replace(data, debug_data), shard)
    with open(test_shard, "r+b") as f:
        f.seek(os.path.getsize(test_shard) // 2)
        f.write(b"\xa5" * 32)
    out = subprocess.run([sys.executable, "-m", "evaluation.cli", "--workdir", debug_run, "--data", data, "--k", "2",
                          "--num", "4", "--no-addition", "--no-jit", "--no-progress", "--out", str(tmp_path / "eval")],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"sqair-eval: error: shard {test_shard} is corrupted" in out.stderr


def test_k_means_particles_per_sequence_as_in_the_other_tools(tmp_path):
    from trainers import train

    args = train._parser().parse_args(["--workdir", str(tmp_path / "run"), "--preset", "debug", "--k", "7"])
    assert train._resolve(args).num_particles == 7
    args = train._parser().parse_args(["--workdir", str(tmp_path / "run"), "--preset", "debug"])
    assert train._resolve(args).num_particles == 3  # The debug preset's own.
    bad = _train("--workdir", str(tmp_path / "run"), "--preset", "debug", "--k", "1")
    assert bad.returncode == 2 and "num_particles" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_ctrl_c_and_sigterm_save_the_current_step(debug_data, tmp_path):
    """Ctrl-C, and SIGTERM (what Kubernetes and Slurm send before killing a job), save a checkpoint and exit
    (130, 143). The two runs go side by side, a core each, to keep the suite short."""
    runs = {}
    try:
        for signum, returncode in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            workdir = str(tmp_path / signal.Signals(signum).name)
            proc = subprocess.Popen(
                [sys.executable, "-m", "trainers.train", "--workdir", workdir, "--preset", "debug", "--data",
                 debug_data, "--steps", "100000", "--set", "checkpoint_every=2", "--set", "eval_every=100000",
                 "--set", "curriculum_stage_steps=100000", "--no-progress"],  # One length: no second trace.
                cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            runs[signum] = (workdir, proc, returncode)
        deadline = time.time() + 600
        for signum, (workdir, proc, _) in runs.items():
            # Wait until training runs: any checkpoint (every loop of 2 steps is one). Not ckpt-2 by name: only
            # the last 3 are kept, so a run that got ahead while we waited for the other has deleted it.
            checkpointed = lambda: glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.index"))  # noqa: E731
            while time.time() < deadline and not checkpointed() and proc.poll() is None:
                time.sleep(0.5)
            assert checkpointed(), proc.stderr.read()[-2000:] if proc.poll() is not None else "no checkpoint"
        time.sleep(2)
        for signum, (_, proc, _) in runs.items():
            proc.send_signal(signum)
        for signum, (workdir, proc, returncode) in runs.items():
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == returncode, err[-2000:]
            assert "interrupted: saved" in out and f"(stopped by {signal.Signals(signum).name})" in out
            saved_step = int(out.split("interrupted: saved ")[1].split(" at step ")[1].split(";")[0])
            assert saved_step >= 2 and saved_step % 2 == 0  # Saved between loops: a consistent step.
            assert os.path.exists(os.path.join(workdir, "checkpoints", f"ckpt-{saved_step}.index"))
    finally:  # A failed check must not leave trainings running for the rest of the suite.
        for _, proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from sqair_tf import model as model_lib
    from trainers import checkpoints, config as config_lib, trainer as trainer_lib

    data, workdir, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


    def single_device_model(cfg):  # The same model, built on one device.
        h, w, c = cfg.model.image_shape
        ref = model_lib.SQAIR(cfg.model)
        ref(tf.zeros([1, 1, h, w, c]), seed=tf.constant([0, 0]))
        return ref


    def replica_spread(trainer):  # Largest difference between the two replicas of any trainable variable.
        return max(float(np.max(np.abs(v.value.values[0].numpy() - v.value.values[1].numpy())))
                   for v in trainer.model.trainable_variables)


    def replica_gap(trainer, ref):  # Largest |replica − ref| over the replicas of every trainable variable.
        return max(float(np.max(np.abs(x.numpy() - r.numpy())))
                   for v, r in zip(trainer.model.trainable_variables, ref.trainable_variables) for x in v.value.values)


    def one_step(name, overrides):  # One mirrored training step with `overrides`, and one device's same step.
        cfg = config_lib.preset("debug", [f"data_dir={data}", "steps_per_loop=1"] + overrides)
        trainer = trainer_lib.Trainer(cfg, f"{workdir}/{name}", strategy=strategy, progress=False,
                                      log=lambda *a: None)
        ref = single_device_model(cfg)  # With the same initial weights.
        ref.set_weights(trainer.model.get_weights())
        ref_opt = trainer_lib.make_optimizer(cfg)

        first = next(iter(trainer._dataset(0)))  # The batch the trainer's first step sees, one part per replica.
        shards = strategy.experimental_local_results(first)
        metrics = trainer.train(total_steps=1, finalize=False)
        trainer.save()  # The source of `init_from` below.

        seq_len = cfg.seq_len(0, trainer.data_len)
        step_seed = tf.random.experimental.stateless_fold_in(tf.constant([cfg.seed, 0x5EED]), 0)
        grads, loss_sum = None, 0.0
        for r, shard in enumerate(shards):
            seed = tf.random.experimental.stateless_fold_in(step_seed, r)
            _, g, sums = trainer_lib.loss_and_grads(ref, cfg, shard["frames"][:, :seq_len], shard["count"], seed)
            grads = g if grads is None else [a + b for a, b in zip(grads, g)]
            loss_sum += float(sums["loss"])
        norm = float(tf.linalg.global_norm(grads))
        if cfg.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, cfg.clip_norm)  # TF's own clipping of the summed gradient.
        ref_opt.apply_gradients(zip(grads, ref.trainable_variables))
        return {"replicas": strategy.num_replicas_in_sync,
                "shard_sizes": [int(s["frames"].shape[0]) for s in shards],
                "loss": metrics["loss"], "ref_loss": loss_sum / cfg.batch_size,
                "replica_diff": replica_spread(trainer), "ref_diff": replica_gap(trainer, ref), "grad_norm": norm,
                "logged_grad_norm": metrics.get("grad_norm"), "clipped_fraction": metrics.get("clipped_fraction")}


    def init_from(source):  # `--init-from` under the strategy: every replica starts from the source's weights.
        cfg = config_lib.preset("debug", [f"data_dir={data}", "steps_per_loop=1", f"init_from={source}",
                                          "total_steps=2"])
        trainer = trainer_lib.Trainer(cfg, f"{workdir}/init", strategy=strategy, progress=False,
                                      log=lambda *a: None)
        ref, ref_step = single_device_model(cfg), tf.Variable(0, dtype=tf.int64)
        checkpoints.restore_weights(ref, ref_step, f"{source}/checkpoints/ckpt-1")
        # Training on from here is the mirrored step checked above; tracing it again would add a minute.
        return {"source_step": int(ref_step.numpy()), "step": int(trainer.step.numpy()),
                "updates": int(trainer.optimizer.iterations.numpy()), "gap": replica_gap(trainer, ref),
                "replica_diff": replica_spread(trainer)}


    results = {name: one_step(name, overrides) for name, overrides in runs.items()}
    results["init_from"] = init_from(f"{workdir}/plain")
    print(json.dumps(results))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_matches_one_device_with_and_without_clipping(debug_data, tmp_path):
    """Two mirrored runs in one process (one TensorFlow start): the plain `debug` recipe, and one with `clip_norm`;
    then a third that starts from the plain one's checkpoint (`init_from`).

    The second checks that `clip_norm` clips the gradient the two replicas apply together, as one device clipping
    their sum would: TF1 RMSProp (its mean square starts at 1) with a large rate makes the update proportional to
    the clipped gradient, so clipping each replica's half instead (twice the norm) would miss the reference by
    ~lr·clip.
    """
    runs = {"plain": [], "clipped": ["optimizer=rmsprop_tf1", "momentum=0", "learning_rate=1.0", "clip_norm=0.01"]}
    out = subprocess.run([sys.executable, "-c", MIRRORED, debug_data, str(tmp_path), json.dumps(runs)], cwd=REPO,
                         env=ENV, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    init = results.pop("init_from")
    for result in results.values():
        assert result["replicas"] == 2 and result["shard_sizes"] == [2, 2]
        assert result["replica_diff"] == 0.0  # Replicas stay identical.

    plain = results["plain"]
    # Same loss as one device computing the same two half-batches with the same seeds, and the same update.
    assert plain["loss"] == pytest.approx(plain["ref_loss"], rel=1e-5)
    assert plain["ref_diff"] < 1e-6
    assert plain["logged_grad_norm"] is None  # Without clipping, the summed gradient's norm is not computed.

    clipped = results["clipped"]
    assert clipped["grad_norm"] > 0.1  # The clipping is active: the summed gradient is ≥ 10x the limit.
    assert clipped["ref_diff"] < 1e-5  # Updates are ~1e-3 per entry here; clipping per replica would differ by that.
    # The logged norm is the summed gradient's, before clipping (each replica's half would be about half of it).
    assert clipped["logged_grad_norm"] == pytest.approx(clipped["grad_norm"], rel=1e-4)
    assert clipped["clipped_fraction"] == 1.0

    # `init_from` under the strategy: both replicas hold the plain run's step-1 weights exactly, and the step and
    # the optimizer's update count (the learning-rate schedule's) go on from it.
    assert init["source_step"] == init["step"] == init["updates"] == 1
    assert init["gap"] == 0.0 and init["replica_diff"] == 0.0
