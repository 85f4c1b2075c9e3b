"""The trainer on the `debug` preset: learning, exact resume, non-finite skips, configs, TensorBoard."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from sqair_tf import interface
from sqair_tf import objectives
from trainers import config as config_lib
from trainers import trainer as trainer_lib


# An override past every run here: one curriculum length, so one training loop to trace (~20 s each on `debug`).
ONE_LENGTH = "curriculum_stage_steps=1000"


def _config(data, *overrides):
    return config_lib.preset("debug", [f"data_dir={data}", *overrides])


def _state(trainer):
    """Every number a run carries forward: weights, optimizer slots, counters."""
    return ([v.numpy() for v in trainer.model.weights] + [v.numpy() for v in trainer.optimizer.variables]
            + [trainer.step.numpy(), trainer.nonfinite_total.numpy()])


def _fixed_batch_iwae(trainer, batch):
    out = trainer.model(batch["frames"][:, :3], seed=tf.constant([7, 7]), num_particles=3)
    return float(tf.reduce_mean(objectives.iwae_bound(interface.sequence_log_weights(out, 3))))


@pytest.mark.slow
def test_loss_falls_within_a_few_dozen_steps(debug_data, tmp_path):
    trainer = trainer_lib.Trainer(_config(debug_data, "total_steps=40", "steps_per_loop=10", "eval_every=40",
                                          "checkpoint_every=40", ONE_LENGTH),
                                  str(tmp_path), progress=False, log=lambda *a: None)
    batch = next(iter(trainer._dataset(0)))
    before = _fixed_batch_iwae(trainer, batch)
    first = trainer.train(total_steps=10, finalize=False)["loss"]
    last = trainer.train(total_steps=40)["loss"]
    after = _fixed_batch_iwae(trainer, batch)
    assert np.isfinite([before, after, first, last]).all()
    # The surrogate loss is −IWAE/L (+ a zero-mean score term): it must fall, and the bound on a fixed batch rise.
    assert last < 0.9 * first, (first, last)
    assert after > before + 25.0, (before, after)  # Measured: −515 → −469 nats over 3 frames.


@pytest.fixture(scope="module")
def plain_run(debug_data, tmp_path_factory):
    """The `debug` preset's whole run (8 steps, crossing a curriculum stage, L = 2 → 3 at step 4, and a checkpoint),
    paused in-process after steps 3 and 4, where the count-penalty test reads it; it is never reloaded, so it is
    also the uninterrupted run of the resume test. Shared: each trainer traces its loops again (~20 s a length)."""
    trainer = trainer_lib.Trainer(_config(debug_data), str(tmp_path_factory.mktemp("plain_run")), progress=False,
                                  log=lambda *a: None)
    trainer.train(total_steps=3, finalize=False)
    at_3 = _state(trainer)
    trainer.train(total_steps=4, finalize=False)
    weights_at_4 = trainer.model.get_weights()
    trainer.train()
    return dict(at_3=at_3, weights_at_4=weights_at_4, at_end=_state(trainer))


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(debug_data, plain_run, tmp_path):
    first = trainer_lib.Trainer(_config(debug_data), str(tmp_path), progress=False, log=lambda *a: None)
    first.train(total_steps=6)  # Stops between checkpoints; finalize saves at step 6.
    del first
    lines = []
    resumed = trainer_lib.Trainer(_config(debug_data), str(tmp_path), progress=False, log=lines.append)
    assert int(resumed.step.numpy()) == 6 and "resumed" in lines[0]
    resumed.train()

    a, b = plain_run["at_end"], _state(resumed)
    assert len(a) == len(b)
    # Equal to float32 rounding: on a loaded machine a multi-threaded CPU kernel can sum in another order (a CI
    # run with two trainings beside it differed by 3e-8 in 82 of 576 weights). Resuming at the wrong batch or seed
    # moves the weights by far more than this.
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_count_penalty_enters_the_loss_at_count_penalty_start(debug_data, plain_run, tmp_path):
    # λ = 50 from step 3 (inside a 2-step loop, so the trainer must end a loop there): the first 3 steps are those of
    # the run without λ, the 4th is not.
    late = trainer_lib.Trainer(_config(debug_data, "model.count_penalty=50", "count_penalty_start=3"), str(tmp_path),
                               progress=False, log=lambda *a: None)
    late.train(total_steps=3, finalize=False)
    for x, y in zip(plain_run["at_3"], _state(late)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    late.train(total_steps=4, finalize=False)
    moved = [np.abs(x - y).max() for x, y in zip(plain_run["weights_at_4"], late.model.get_weights())]
    assert max(moved) > 1e-4, moved
    assert late._loop_keys == [(2, 0.0), (2, None)]  # Steps 0–1 and 2 without λ, step 3 with it.


@pytest.fixture(scope="module")
def budget_run(debug_data, tmp_path_factory):
    """A run stopped by a wall-clock budget, then trained on to step 4 (where every kind of summary is logged):
    what each stage left, its directory and its final weights. Shared so that one run serves the budget,
    TensorBoard and load-model tests."""
    workdir = tmp_path_factory.mktemp("budget_run")
    lines = []
    trainer = trainer_lib.Trainer(_config(debug_data, "total_steps=1000"), str(workdir), progress=False,
                                  log=lines.append)
    trainer.train(max_seconds=0.0)  # Past the budget at the end of the first loop (steps_per_loop = 2).
    stopped = dict(step=int(trainer.step.numpy()), checkpoint=os.path.basename(trainer.manager.latest_checkpoint),
                   lines=list(lines))
    trainer.train(total_steps=4, max_seconds=3600.0)  # A budget it does not reach: the step count ends it.
    return dict(workdir=workdir, stopped=stopped, final_step=int(trainer.step.numpy()), config=trainer.config,
                weights={v.path: v.numpy() for v in trainer.model.weights})


@pytest.mark.slow
def test_wall_clock_budget_stops_after_the_loop_that_ends_past_it_and_finalizes(budget_run):
    stopped = budget_run["stopped"]
    assert stopped["step"] == 2
    assert stopped["checkpoint"] == "ckpt-2"  # Finalized: saved at step 2...
    assert any(line.startswith("step 2: held-out counting accuracy") for line in stopped["lines"])  # ...evaluated.
    assert budget_run["final_step"] == 4  # (4, not further: past it the curriculum's next length is traced.)


@pytest.mark.slow
def test_shard_corrupted_mid_run_stops_with_its_name_and_keeps_the_last_checkpoint(debug_data, tmp_path):
    import shutil

    from data_pipelines.errors import DataError

    data = str(tmp_path / "data")
    shutil.copytree(debug_data, data)
    overrides = ("total_steps=60", "checkpoint_every=4", ONE_LENGTH)  # Crossing lengths is tested elsewhere.
    trainer = trainer_lib.Trainer(_config(data, *overrides), str(tmp_path / "run"), progress=False,
                                  log=lambda *a: None)
    trainer.train(total_steps=4)  # Checkpoint at step 4; the 64 sequences are all in the shuffle buffer by now.
    shard = os.path.join(data, "train-00000-of-00001.tfrecord")
    with open(shard, "r+b") as f:  # Goes bad after the start-up check: met when the next epoch re-reads it.
        f.seek(os.path.getsize(shard) // 2)
        f.write(b"\xa5" * 32)
    with pytest.raises(DataError, match=f"shard {shard} is corrupted"):
        trainer.train()
    latest = trainer.manager.latest_checkpoint
    stopped_at = int(latest.rsplit("-", 1)[1])
    assert 4 <= stopped_at < 60 and stopped_at % 4 == 0  # One full epoch is 16 steps: it stopped in the 2nd.
    restored = trainer_lib.Trainer(_config(debug_data, *overrides), str(tmp_path / "run"), progress=False,
                                   log=lambda *a: None)
    assert int(restored.step.numpy()) == stopped_at  # The checkpoint is whole and loads.


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True])
def test_fused_single_replica_step_equals_the_split_step_and_skips_non_finite_updates(debug_data, tmp_path, jit):
    """The one-cluster step (forward, backward, check, update) computes what the replica-split path computes.

    Uncompiled, the two paths are compared. Compiled with XLA, as every shipped recipe trains, the fused step's
    update and skip are checked alone: XLA draws other random numbers than the eager kernels, so only a compiled
    split path could be compared with it, and compiling the training step twice (about 70 s each here) is most of
    this test's time. The two paths differ in what they compile, not in what they compute.
    """
    def trainer_in(name, fused):
        trainer = trainer_lib.Trainer(_config(debug_data, f"jit_compile={jit}"), str(tmp_path / name),
                                      progress=False, log=lambda *a: None)
        trainer._fused = fused
        return trainer

    trainers = [trainer_in("fused", True)] + ([] if jit else [trainer_in("split", False)])
    good = next(iter(trainers[0]._dataset(0)))
    bad = dict(good, frames=tf.tensor_scatter_nd_update(good["frames"], [[0, 0, 5, 5, 0]], [np.nan]))
    results = []
    for trainer in trainers:
        loop = trainer._loop_fn(2)
        iterator = iter(tf.data.Dataset.from_tensors(good).concatenate(tf.data.Dataset.from_tensors(bad)).repeat())
        totals, applied = loop(iterator, tf.constant(1))  # good
        before = _state(trainer)[:-2]
        skipped_totals, skipped = loop(iterator, tf.constant(1))  # NaN in one frame: non-finite loss and gradients
        assert all(float(v) == 0.0 for v in skipped_totals.values())  # Skipped steps contribute no metrics.
        for x, y in zip(before, _state(trainer)[:-2]):
            np.testing.assert_array_equal(x, y)  # Neither the weights nor the optimizer state moved.
        assert int(trainer.nonfinite_total.numpy()) == 1 and int(trainer.nonfinite_in_row.numpy()) == 1
        _, recovered = loop(iterator, tf.constant(1))  # good again: applied, and the run of skips ends
        assert float(recovered) == 1.0 and int(trainer.nonfinite_in_row.numpy()) == 0
        assert any(np.any(x != y) for x, y in zip(before, _state(trainer)[:-2]))  # That update was applied.
        assert int(trainer.step.numpy()) == 3 and int(trainer.nonfinite_total.numpy()) == 1
        results.append((totals, float(applied), float(skipped), before))
    assert [(applied, skipped) for _, applied, skipped, _ in results] == [(1.0, 0.0)] * len(trainers)
    assert int(trainers[0].optimizer.iterations.numpy()) == 2  # The skipped step did not count as an update.
    if not jit:
        (totals_a, _, _, state_a), (totals_b, _, _, state_b) = results
        for key in totals_a:
            np.testing.assert_allclose(float(totals_a[key]), float(totals_b[key]), rtol=1e-5, err_msg=key)
        for x, y in zip(state_a, state_b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_clip_by_global_norm_matches_numpy():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=(5,))]
    norm = np.sqrt(sum(float(np.sum(g ** 2)) for g in grads))
    tensors = [tf.constant(g, tf.float32) for g in grads]
    for limit in (0.5 * norm, 2.0 * norm):
        clipped = trainer_lib.clip_by_global_norm(tensors, limit)
        for g, c in zip(grads, clipped):
            np.testing.assert_allclose(c.numpy(), g * min(1.0, limit / norm), rtol=1e-6)
    assert trainer_lib.clip_by_global_norm(tensors, 0.0) is tensors  # 0 = the paper: untouched.
    nan = trainer_lib.clip_by_global_norm([tf.constant([np.nan, 1.0])], 1.0)[0].numpy()
    assert np.isnan(nan[0]) and nan[1] == 1.0  # Left to the non-finite check, which skips the update.
    with pytest.raises(ValueError, match="clip_norm must be >= 0"):
        config_lib.preset("debug", ["clip_norm=-1"])


@pytest.mark.slow
def test_fused_step_applies_the_clipped_gradient(debug_data, tmp_path):
    """One fused step with `clip_norm` moves the weights as TF1 RMSProp does on TF's own clipped gradient."""
    config = _config(debug_data, "optimizer=rmsprop_tf1", "momentum=0", "learning_rate=1.0", "clip_norm=0.01")
    trainer = trainer_lib.Trainer(config, str(tmp_path), progress=False, log=lambda *a: None)
    batch = next(iter(trainer._dataset(0)))
    frames = batch["frames"][:, :config.seq_len(0)]
    seed = trainer_lib.training_step_seed(config.seed, trainer.step)
    before = [v.numpy() for v in trainer.model.trainable_variables]
    _, grads, _ = trainer_lib.loss_and_grads(trainer.model, config, frames, batch["count"], seed)
    assert float(tf.linalg.global_norm(grads)) > 0.1  # Clipping is active.
    clipped, _ = tf.clip_by_global_norm(grads, 0.01)
    reference = trainer_lib.make_optimizer(config)
    variables = [tf.Variable(b) for b in before]
    reference.apply_gradients(zip(clipped, variables))
    sums, _ = trainer._fused_fn(frames, batch["count"], seed)
    for v, r in zip(trainer.model.trainable_variables, variables):
        np.testing.assert_allclose(v.numpy(), r.numpy(), atol=1e-6)
    # The logged norm is the one before clipping; summed per sequence, it is B times the step's norm.
    assert float(sums["grad_norm"]) / config.batch_size == pytest.approx(float(tf.linalg.global_norm(grads)),
                                                                          rel=1e-5)
    assert float(sums["clipped_fraction"]) == config.batch_size


@pytest.mark.slow
def test_stops_after_too_many_non_finite_updates_and_keeps_the_last_good_checkpoint(debug_data, tmp_path):
    trainer = trainer_lib.Trainer(_config(debug_data, "total_steps=20", ONE_LENGTH), str(tmp_path), progress=False,
                                  log=lambda *a: None)
    trainer.train(total_steps=4)  # Checkpoint at step 4. The limit (3) is checked between loops of 2 steps.
    good = [v.numpy() for v in trainer.model.weights]
    scale = next(v for v in trainer.model.trainable_variables if "output_scale" in v.path)
    scale.assign(tf.fill(scale.shape, np.nan))  # Every later gradient is NaN.
    with pytest.raises(trainer_lib.TrainingError, match=r"stopping at step 8: 4 consecutive updates had a non-finite"):
        trainer.train()
    assert trainer.manager.latest_checkpoint.endswith("ckpt-4")
    restored = trainer_lib.Trainer(None, str(tmp_path), progress=False, log=lambda *a: None)
    assert int(restored.step.numpy()) == 4
    for x, y in zip(good, [v.numpy() for v in restored.model.weights]):
        np.testing.assert_array_equal(x, y)


def test_resume_with_an_incompatible_config_is_refused(debug_data, tmp_path):
    trainer_lib.Trainer(_config(debug_data), str(tmp_path), progress=False, log=lambda *a: None)
    with pytest.raises(trainer_lib.TrainingError, match=r"batch_size: 4 in the run, 8 requested"):
        trainer_lib.Trainer(_config(debug_data, "batch_size=8"), str(tmp_path), progress=False)
    with pytest.raises(trainer_lib.TrainingError, match=r"model.hidden_size"):
        trainer_lib.Trainer(_config(debug_data, "model.hidden_size=32"), str(tmp_path), progress=False)
    # Execution settings may change on resume.
    trainer = trainer_lib.Trainer(_config(debug_data, "total_steps=100", "jit_compile=true"), str(tmp_path),
                                  progress=False, log=lambda *a: None)
    assert trainer.config.total_steps == 100


def test_data_of_the_wrong_size_is_refused(debug_data, tmp_path):
    config = config_lib.preset("paper", [f"data_dir={debug_data}"])
    with pytest.raises(trainer_lib.TrainingError, match=r"32×32 frames but the model expects 50×50"):
        trainer_lib.Trainer(config, str(tmp_path), progress=False)


@pytest.mark.slow
def test_tensorboard_has_scalars_images_and_hparams(budget_run):
    # Step 4 logs every kind (eval_every = image_every = 4); the preset's 8 would trace a second length's loop.
    tags = set()
    for path in glob.glob(str(budget_run["workdir"] / "tensorboard" / "*" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    for tag in ("iwae", "elbo", "log_likelihood", "kl", "ess", "learning_rate", "seq_len", "steps_per_sec",
                "grad_norm", "held_out/counting_accuracy", "held_out/iwae", "reconstruction",
                "_hparams_/session_start_info"):
        assert tag in tags, (tag, sorted(tags))
    assert "clipped_fraction" not in tags  # Only logged when clip_norm is set.


def test_config_round_trips_and_overrides_are_typed():
    config = config_lib.preset("paper", ["lr_boundaries=10,20", "model.image_shape=32,32,1", "jit_compile=true",
                                         "learning_rate=3e-5", "total_steps=1e6"])
    assert config.lr_boundaries == (10, 20) and config.model.image_shape == (32, 32, 1)
    assert config.jit_compile is True and config.learning_rate == 3e-5 and config.total_steps == 1_000_000
    assert config_lib.TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown config key 'learning_rat'"):
        config.with_overrides(["learning_rat=1"])
    with pytest.raises(ValueError, match="cannot parse 'abc' for batch_size"):
        config.with_overrides(["batch_size=abc"])
    with pytest.raises(ValueError, match="num_particles must be ≥ 2"):
        config.with_overrides(["num_particles=1"])
    with pytest.raises(ValueError, match=r"count_penalty_start=100 needs .* model.count_penalty > 0"):
        config.with_overrides(["count_penalty_start=100"])
    with pytest.raises(ValueError, match="count_penalty_start must be a step >= 0"):
        config.with_overrides(["model.count_penalty=3", "count_penalty_start=-1"])


def test_paper_preset_is_the_spec_recipe():
    paper = config_lib.PRESETS["paper"]
    assert (paper.optimizer, paper.learning_rate, paper.lr_boundaries, paper.lr_decay) == (
        "rmsprop_tf1", 1e-5, (400_000, 1_000_000), 1 / 3)
    assert (paper.batch_size, paper.num_particles, paper.vimco_signal) == (32, 5, "paper")
    # Curriculum (BUILD.md O5): 3 frames for steps 0–99,999, then +1 every 100k, 10 from step 700,000.
    assert [paper.seq_len(s) for s in (0, 99_999, 100_000, 699_999, 700_000, 2_000_000)] == [3, 3, 4, 9, 10, 10]
    assert isinstance(trainer_lib.make_optimizer(paper), trainer_lib.rmsprop_tf1.RMSPropTF1)
    schedule = trainer_lib.make_learning_rate(paper)
    assert [float(schedule(s)) for s in (0, 400_000, 400_001, 1_000_001)] == pytest.approx(
        [1e-5, 1e-5, 1e-5 / 3, 1e-5 / 9])


@pytest.mark.slow
def test_load_model_restores_every_weight_without_the_optimizer(budget_run):
    from trainers import checkpoints

    model, config, step = checkpoints.load_model(str(budget_run["workdir"]))
    assert step == 4 and config == budget_run["config"]
    trained = budget_run["weights"]
    loaded = {v.path: v.numpy() for v in model.weights}
    assert trained.keys() == loaded.keys()
    for key in trained:
        np.testing.assert_array_equal(trained[key], loaded[key], err_msg=key)
    with pytest.raises(checkpoints.CheckpointError, match="no config.json"):
        checkpoints.load_model(str(budget_run["workdir"] / "nothing"))
