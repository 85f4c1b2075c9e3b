"""The whole SQAIR model: parameter count, output contract, masking, reproducibility, jit and the IWAE bound."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sqair_tf import interface
from sqair_tf import config as config_lib
from sqair_tf import model as model_lib
from sqair_tf import objectives
from sqair_tf import timestep

DEBUG = config_lib.preset("debug")
SEED = tf.constant([1, 2], tf.int32)


def _frames(batch=2, steps=3, config=DEBUG, seed=0):
    """Frames with one bright square moving right, so there is something to find."""
    h, w, c = config.image_shape
    rng = np.random.default_rng(seed)
    frames = np.zeros((batch, steps, h, w, c), np.float32)
    for b in range(batch):
        y, x = rng.integers(2, h // 2, size=2)
        for t in range(steps):
            frames[b, t, y:y + 8, x + 2 * t:x + 2 * t + 8] = 1.0
    return tf.constant(frames)


@pytest.fixture(scope="module")
def debug_model():
    model = model_lib.SQAIR(DEBUG)
    model(_frames(), seed=SEED, num_particles=2)
    return model


def test_paper_preset_has_the_spec_parameter_count():
    model = model_lib.SQAIR(config_lib.preset("paper"))
    model(tf.zeros([1, 1, 50, 50, 1]), seed=SEED)
    assert model.count_params() == 2_951_522
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 2_951_522
    names = [v.path for v in model.trainable_variables]
    assert len(names) == len(set(names))  # The shared glimpse encoder is counted once.


def test_output_contract(debug_model):
    b, t, k = 2, 3, 2
    n, d, g = DEBUG.num_slots, DEBUG.z_what_dim, DEBUG.glimpse_size
    h, w, c = DEBUG.image_shape
    out = debug_model(_frames(b, t), seed=SEED, num_particles=k)
    expected = {
        "canvas": (t, b * k, h, w, c), "glimpses": (t, b * k, n, g, g, c), "log_likelihood": (t, b * k),
        "log_p_continuous": (t, b * k), "log_p_discrete": (t, b * k), "log_q_continuous": (t, b * k),
        "log_q_discrete": (t, b * k), "log_weight": (t, b * k), "z_what": (t, b * k, n, d),
        "z_where": (t, b * k, n, 4), "z_pres": (t, b * k, n), "presence_prob": (t, b * k, n),
        "object_ids": (t, b * k, n), "num_objects": (t, b * k), "boxes": (t, b * k, n, 4),
        "glimpse_boxes": (t, b * k, n, 4)}
    assert set(out) == set(expected)
    for key, shape in expected.items():
        assert tuple(out[key].shape) == shape, key
    assert out["object_ids"].dtype == tf.int32 and out["num_objects"].dtype == tf.int32
    np.testing.assert_array_equal(out["num_objects"], tf.cast(tf.reduce_sum(out["z_pres"], -1), tf.int32))
    # Present slots come first and carry ids; empty slots carry −1.
    pres = out["z_pres"].numpy()
    assert np.all(np.diff(pres, axis=-1) <= 0)
    np.testing.assert_array_equal(out["object_ids"].numpy() >= 0, pres > 0)
    # The log weight is the documented combination of its parts.
    np.testing.assert_allclose(
        out["log_weight"], out["log_likelihood"] + out["log_p_continuous"] + out["log_p_discrete"]
        - out["log_q_continuous"] - out["log_q_discrete"], rtol=1e-6)
    lw = interface.sequence_log_weights(out, k)
    assert tuple(lw.shape) == (b, k)


def test_log_weights_finite_on_random_and_empty_frames(debug_model):
    rng = np.random.default_rng(0)
    for frames in (tf.constant(rng.random((3, 4) + DEBUG.image_shape), tf.float32),
                   tf.zeros((3, 4) + DEBUG.image_shape)):
        out = debug_model(frames, seed=SEED, num_particles=3)
        for key in ("log_weight", "log_likelihood", "log_p_continuous", "log_q_continuous", "log_q_discrete"):
            assert np.all(np.isfinite(out[key].numpy())), key


def test_same_seed_same_pass_other_seed_other_samples(debug_model):
    frames = _frames()
    a = debug_model(frames, seed=SEED, num_particles=2)
    b = debug_model(frames, seed=SEED, num_particles=2)
    c = debug_model(frames, seed=tf.constant([3, 4], tf.int32), num_particles=2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.allclose(a["z_what"], c["z_what"])
    # Particles of one sequence are independent samples.
    assert not np.allclose(a["z_where"][:, 0], a["z_where"][:, 1])


def test_absent_objects_contribute_nothing_to_log_probs(debug_model):
    """BUILD.md O7.2: whatever absent slots hold, the log-probs of a step do not change."""
    cell = debug_model.cell
    bk, n = 4, DEBUG.num_slots
    image = _frames(bk, 1)[:, 0]
    state = cell.initial_state(bk)
    out_a, _ = cell.inference_step(image, state, tf.constant(1), SEED)
    rng = np.random.default_rng(1)
    junk = state._replace(z_what=tf.constant(rng.normal(size=state.z_what.shape) * 5, tf.float32),
                          z_where=tf.constant(rng.normal(size=state.z_where.shape), tf.float32))
    out_b, _ = cell.inference_step(image, junk, tf.constant(1), SEED)
    # PROP sees absent objects only through masked terms; DISC's inputs do not depend on them either.
    for key in ("log_p_continuous", "log_q_continuous", "log_q_discrete", "log_p_discrete"):
        np.testing.assert_allclose(out_a[key], out_b[key], rtol=1e-5, atol=1e-4, err_msg=key)
    assert n == DEBUG.num_slots


def test_objects_are_propagated_with_stable_ids():
    """With presence forced on (presence biases +30), every slot is discovered at t = 0 and propagated with its id
    at t = 1 (paper §3: propagation keeps an object's identity); nothing is left to discover."""
    import dataclasses

    forced = dataclasses.replace(DEBUG, disc_presence_bias=30.0, prop_presence_bias=30.0)
    model = model_lib.SQAIR(forced)
    model(_frames(1, 1), seed=SEED)
    cell = model.cell
    image = _frames(4, 1)[:, 0]
    out0, state1 = cell.inference_step(image, cell.initial_state(4), tf.constant(0), SEED)
    out1, _ = cell.inference_step(image, state1, tf.constant(1), tf.constant([5, 6], tf.int32))
    n = DEBUG.num_slots
    np.testing.assert_array_equal(out0["z_pres"].numpy(), np.ones([4, n]))
    np.testing.assert_array_equal(out1["z_pres"].numpy(), np.ones([4, n]))
    ids0, ids1 = out0["object_ids"].numpy(), out1["object_ids"].numpy()
    assert all(len(set(row)) == n and min(row) >= 0 for row in ids0)  # N distinct ids per sequence.
    np.testing.assert_array_equal(ids1, ids0)  # The same objects, in the same slots: no new ones.


@pytest.mark.slow
def test_forward_backward_compiles_under_jit(debug_model):
    frames = _frames(2, 3)

    @tf.function(jit_compile=True)
    def loss_and_grads(frames, seed):
        with tf.GradientTape() as tape:
            out = debug_model(frames, seed=seed, num_particles=2)
            log_weights = interface.sequence_log_weights(out, 2)
            discrete = tf.reshape(tf.reduce_sum(out["log_q_discrete"], 0), [-1, 2])
            loss = tf.reduce_mean(objectives.vimco_surrogate_loss(log_weights, discrete))
        return loss, tape.gradient(loss, debug_model.trainable_variables)

    loss, grads = loss_and_grads(frames, SEED)
    assert np.isfinite(loss.numpy())
    missing = [v.path for v, g in zip(debug_model.trainable_variables, grads) if g is None]
    assert not missing, missing  # Every variable gets a gradient, as the original asserts (BUILD.md O4).
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_iwae_bound_does_not_decrease_with_more_particles(debug_model):
    """E[IWAE_K] is non-decreasing in K (Burda et al. 2016, Thm. 1): compare K=1 and K=8 on fixed data."""
    frames = _frames(8, 3, seed=3)
    values = {}
    for k in (1, 8):
        values[k] = np.stack([
            objectives.iwae_bound(interface.sequence_log_weights(
                debug_model(frames, seed=tf.constant([s, 17 + k], tf.int32), num_particles=k), k)).numpy()
            for s in range(12)])  # [12 seeds, 8 sequences]
    gap = values[8].mean(axis=0) - values[1].mean(axis=0)  # [8 sequences]
    stderr = np.sqrt(values[8].var(axis=0) / 12 + values[1].var(axis=0) / 12)
    # Per sequence, the K=8 bound is larger by more than 2 standard errors (or equal within noise).
    assert np.all(gap > -2 * stderr), (gap, stderr)
    assert gap.mean() > 2 * np.sqrt(np.mean(stderr ** 2) / 8), (gap, stderr)


def test_generation_and_prior_samples(debug_model):
    b, h, w, c = 3, *DEBUG.image_shape
    observed, generated = debug_model.generate(_frames(b, 3), num_steps=4, seed=SEED)
    assert tuple(observed["canvas"].shape) == (3, b, h, w, c)
    assert set(generated) == set(timestep.PRIOR_OUTPUTS) | {"boxes"}
    assert tuple(generated["canvas"].shape) == (4, b, h, w, c)
    # Without discovery, no new ids appear while imagining, and objects can only disappear.
    last_ids = observed["object_ids"][-1].numpy()
    for t in range(4):
        ids = generated["object_ids"][t].numpy()
        for row_ids, row_last in zip(ids, last_ids):
            assert set(i for i in row_ids if i >= 0) <= set(i for i in row_last if i >= 0)
    samples = debug_model.sample(5, 4, seed=SEED)
    assert tuple(samples["canvas"].shape) == (4, 5, h, w, c)
    assert samples["num_objects"].numpy().max() <= DEBUG.num_slots
    again = debug_model.sample(5, 4, seed=SEED)
    np.testing.assert_array_equal(samples["canvas"], again["canvas"])


def test_count_penalty_is_in_the_log_weight_and_not_in_the_prior(debug_model):
    # The same weights with λ = 5: the first frame's log weight drops by λ per discovered object (nothing is
    # propagated yet, so every present object was discovered), later frames' by a whole number of λ, and the
    # prior's samples (paper Fig. 5) are those of the model without λ.
    penalised = model_lib.SQAIR(dataclasses.replace(DEBUG, count_penalty=5.0))
    frames = _frames(4, 3)
    penalised(frames, seed=SEED, num_particles=2)
    penalised.set_weights(debug_model.get_weights())
    plain_out = debug_model(frames, seed=SEED, num_particles=2)
    out = penalised(frames, seed=SEED, num_particles=2)
    np.testing.assert_array_equal(out["z_pres"], plain_out["z_pres"])
    drop = (plain_out["log_weight"] - out["log_weight"]).numpy() / 5.0  # [T, BK], discovered objects per frame
    np.testing.assert_allclose(drop[0], plain_out["num_objects"][0], atol=1e-3)
    np.testing.assert_allclose(drop, np.round(drop), atol=1e-3)
    assert drop.min() > -1e-3 and drop[0].sum() > 0
    np.testing.assert_array_equal(penalised.sample(5, 4, seed=SEED)["canvas"],
                                  debug_model.sample(5, 4, seed=SEED)["canvas"])
    # A call's own λ replaces the config's (the trainer's count_penalty_start): λ = 0 is the plain model, and
    # λ = 10 drops twice as far as the config's 5.
    unpenalised = penalised(frames, seed=SEED, num_particles=2, count_penalty=0.0)
    np.testing.assert_array_equal(unpenalised["log_weight"], plain_out["log_weight"])
    doubled = penalised(frames, seed=SEED, num_particles=2, count_penalty=10.0)
    np.testing.assert_allclose((plain_out["log_weight"] - doubled["log_weight"]).numpy() / 10.0, drop, atol=1e-3)


def test_where_shift_range_reaches_rendering_and_boxes(debug_model):
    """`where_shift_range` c = 2: the canvas, the glimpse boxes and the drawn boxes are those of c·tanh(logit/c),
    and the same weights give other log weights than the paper's c = 1 (extraction moves too)."""
    from sqair_tf import glimpse
    from sqair_tf import spatial_transformer

    wide = model_lib.SQAIR(dataclasses.replace(DEBUG, where_shift_range=2.0))
    frames = _frames(2, 3)
    wide(frames, seed=SEED, num_particles=2)
    wide.set_weights(debug_model.get_weights())
    out = wide(frames, seed=SEED, num_particles=2)
    size = DEBUG.image_shape[:2]
    np.testing.assert_allclose(out["glimpse_boxes"],
                               spatial_transformer.boxes_from_where(out["z_where"], size, 2.0), rtol=1e-6)
    assert not np.allclose(out["glimpse_boxes"], spatial_transformer.boxes_from_where(out["z_where"], size))
    frames_rows = np.repeat(np.swapaxes(frames, 0, 1), 2, axis=1)  # [T, BK, H, W, C]
    np.testing.assert_array_equal(out["boxes"], glimpse.drawn_boxes(out["glimpses"], out["z_where"], out["z_pres"],
                                                                    size, shift_range=2.0, frames=frames_rows))
    canvas, _ = glimpse.compose(out["glimpses"], out["z_where"], out["z_pres"],
                                wide.cell.renderer.mean_image, shift_range=2.0)
    np.testing.assert_allclose(out["canvas"], canvas, atol=1e-5)
    paper = debug_model(frames, seed=SEED, num_particles=2)
    assert np.all(np.isfinite(out["log_weight"])) and not np.allclose(out["log_weight"], paper["log_weight"])
