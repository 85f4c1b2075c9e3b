"""Test-time refinement (`sqair_tf/refinement.py`): the tensor Adam against Keras's, a hand-built object found
again after a shift, and `SQAIR.refine` on the model's own outputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sqair_tf import config as config_lib
from sqair_tf import glimpse
from sqair_tf import model as model_lib
from sqair_tf import refinement
from sqair_tf import spatial_transformer


def test_adam_matches_keras_adam_step_for_step():
    # A loss with different curvature per coordinate and a coupling between the two tensors, in float64.
    a = tf.constant([[0.5, -1.0, 2.0]], tf.float64)

    def loss(x, y):
        return tf.reduce_sum(tf.square(x - a) * [1.0, 4.0, 0.25]) + tf.reduce_sum(y ** 4) + tf.reduce_sum(x) * y[0]

    x0, y0 = tf.zeros([1, 3], tf.float64), tf.constant([1.0, -2.0], tf.float64)
    # Keras keeps its hyperparameters in float32: these are exact there, and ε = 0.5 makes its placement matter.
    hyper = dict(learning_rate=0.0625, beta_1=0.5, beta_2=0.75, epsilon=0.5)
    for steps in (0, 1, 7):
        x, y = refinement.adam(loss, [x0, y0], steps, **hyper)
        xv, yv = tf.Variable(x0), tf.Variable(y0)
        optimizer = keras.optimizers.Adam(**hyper)
        for _ in range(steps):
            with tf.GradientTape() as tape:
                value = loss(xv, yv)
            optimizer.apply_gradients(zip(tape.gradient(value, [xv, yv]), [xv, yv]))
        np.testing.assert_allclose(x.numpy(), xv.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y.numpy(), yv.numpy(), rtol=1e-12, atol=1e-12)
    assert not np.allclose(x.numpy(), x0.numpy())  # Seven steps moved it.


def test_adam_runs_inside_a_compiled_function_and_stops_gradients():
    start = tf.constant([3.0, -1.0])

    @tf.function(jit_compile=True)
    def refine(v):
        return refinement.adam(lambda p: tf.reduce_sum(tf.square(p)), [v], 200, learning_rate=0.1)[0]

    np.testing.assert_allclose(refine(start).numpy(), [0.0, 0.0], atol=0.05)  # The minimum of |p|².
    with tf.GradientTape() as tape:
        tape.watch(start)
        out = refinement.adam(lambda p: tf.reduce_sum(tf.square(p)), [start], 3)[0]
    assert tape.gradient(out, start) is None


def _blob(size=20):
    """A bright disc with soft edges in a size×size glimpse, [size, size, 1]."""
    r = np.hypot(*np.meshgrid(np.arange(size) - (size - 1) / 2, np.arange(size) - (size - 1) / 2))
    return tf.constant(np.clip(6.0 - r, 0.0, 1.0)[..., None], tf.float32)


def decode(z_what):
    """The hand-built decoder: a disc whose brightness is z_what, [..., N, 1] → [..., N, G, G, 1]."""
    return _blob() * z_what[..., None, None]


def render(glimpses, z_where, z_pres):
    """The hand-built renderer: the glimpses on a black 40×40 canvas, [..., 40, 40, 1]."""
    return glimpse.compose(glimpses, z_where, z_pres, tf.zeros([40, 40, 1]))[0]


def test_refine_objects_finds_a_shifted_object_and_leaves_absent_slots_alone():
    # Two slots; the first draws a disc whose brightness is its z_what. The frame holds the disc at full brightness
    # at shift (0.2, −0.1); the slot starts 0.22 away and at brightness 0.6. The second slot is absent.
    scale = np.log(0.4 / 0.6)  # sigmoid⁻¹(0.4): the glimpse spans 40 % of the canvas.
    truth = tf.constant([[[scale, scale, np.arctanh(0.2), np.arctanh(-0.1)], [0.0, 0.0, 0.5, 0.5]]], tf.float32)
    z_pres = tf.constant([[1.0, 0.0]])
    frame = render(decode(tf.ones([1, 2, 1])), truth, z_pres)  # [1, 40, 40, 1]
    start_where = tf.constant([[[scale, scale, np.arctanh(0.0), np.arctanh(0.1)], [0.3, -0.2, 0.9, -0.4]]],
                              tf.float32)
    start_what = tf.constant([[[0.6], [0.7]]])
    out = refinement.refine_objects(frame, start_what, start_where, z_pres, decode, render, steps=150)

    _, shift = spatial_transformer.where_to_transform(out["z_where"][0, 0])
    np.testing.assert_allclose(shift.numpy(), [0.2, -0.1], atol=0.01)  # From 0.22 away to within 0.01.
    np.testing.assert_allclose(out["z_what"][0, 0].numpy(), [1.0], atol=0.03)
    np.testing.assert_array_equal(out["z_where"][0, 1].numpy(), start_where[0, 1].numpy())
    np.testing.assert_array_equal(out["z_what"][0, 1].numpy(), start_what[0, 1].numpy())
    np.testing.assert_allclose(out["glimpses"].numpy(), decode(out["z_what"]).numpy())
    # Zero steps: the amortised latents as they were.
    same = refinement.refine_objects(frame, start_what, start_where, z_pres, decode, render, steps=0)
    np.testing.assert_array_equal(same["z_where"].numpy(), start_where.numpy())


def test_sqair_refine_keeps_presence_and_ids_and_lowers_the_reconstruction_error():
    config = config_lib.preset("debug")
    model = model_lib.SQAIR(config)
    h, w, c = config.image_shape
    rng = np.random.default_rng(0)
    frames = np.zeros((2, 3, h, w, c), np.float32)
    for b in range(2):
        y, x = rng.integers(2, h // 2, size=2)
        for t in range(3):
            frames[b, t, y:y + 8, x + 2 * t:x + 2 * t + 8] = 1.0
    outputs = model(frames, seed=tf.constant([1, 2]), num_particles=1)
    batch_major = {key: tf.transpose(value, [1, 0] + list(range(2, value.shape.rank)))
                   for key, value in outputs.items() if value.shape.rank >= 2}  # [B, T, ...]
    refined = model.refine(frames, batch_major, steps=20)

    for key in ("z_pres", "object_ids", "num_objects", "log_weight"):
        np.testing.assert_array_equal(refined[key].numpy(), batch_major[key].numpy())
    np.testing.assert_array_equal(refined["boxes"].numpy(), model.drawn_boxes(refined, frames).numpy())
    np.testing.assert_allclose(refined["canvas"].numpy(), model.cell.renderer(
        refined["glimpses"], refined["z_where"], refined["z_pres"]).numpy())
    np.testing.assert_allclose(refined["glimpse_boxes"].numpy(), spatial_transformer.boxes_from_where(
        refined["z_where"], (h, w), config.where_shift_range).numpy())
    before = np.sum((frames - batch_major["canvas"].numpy()) ** 2)
    after = np.sum((frames - refined["canvas"].numpy()) ** 2)
    assert after < 0.9 * before, (before, after)
    present = batch_major["z_pres"].numpy() > 0.5
    assert present.any()  # The untrained model keeps some objects, so something was refined.
    np.testing.assert_array_equal(refined["z_where"].numpy()[~present], batch_major["z_where"].numpy()[~present])


def test_acceleration_penalty_matches_a_loop_over_tracks():
    # Random ids from a small pool, so that ids repeat across frames (the same object) and some slots are absent.
    rng = np.random.default_rng(3)
    b, t, n = 2, 5, 3
    centres = rng.normal(size=(b, t, n, 2))
    ids = np.stack([np.stack([rng.permutation(5)[:n] for _ in range(t)]) for _ in range(b)])  # unique per frame
    present = rng.random((b, t, n)) < 0.8
    expected = 0.0
    for i in range(b):
        for s in range(2, t):
            for k in range(n):
                if not present[i, s, k]:
                    continue
                earlier = [np.flatnonzero((ids[i, s - d] == ids[i, s, k]) & present[i, s - d]) for d in (1, 2)]
                if all(len(e) == 1 for e in earlier):  # Present with the same id at t − 1 and t − 2.
                    a = centres[i, s, k] - 2 * centres[i, s - 1, earlier[0][0]] + centres[i, s - 2, earlier[1][0]]
                    expected += float(np.sum(a ** 2))
    assert expected > 0  # The draw has tracks three frames long.
    got = refinement.acceleration_penalty(tf.constant(centres), tf.constant(ids), tf.constant(present))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_motion_weight_puts_an_unseen_object_where_its_track_says():
    # One object in three frames: the disc is at shift x = −0.3 and +0.3 in the first and last frames, and the
    # middle frame is blank, so the frame says nothing of where the object is there (a disc drawn anywhere inside
    # costs nearly the same: interpolation moves it a little). The object starts at x = 0.15 in the middle frame;
    # the motion term moves it to the midpoint of its neighbours. Without it, it stays away from there.
    def centres(z_where):
        return spatial_transformer.where_to_transform(z_where)[1] * 19.5  # pixels

    scale = np.log(0.4 / 0.6)
    where = lambda x: [scale, scale, np.arctanh(x), 0.0]  # noqa: E731
    truth = tf.constant([[[where(-0.3)], [where(0.0)], [where(0.3)]]], tf.float32)  # [B=1, T=3, N=1, 4]
    z_pres = tf.ones([1, 3, 1])
    frames = render(decode(tf.ones([1, 3, 1, 1])), truth, z_pres) * tf.constant([1.0, 0.0, 1.0])[:, None, None, None]
    start = tf.constant([[[where(-0.3)], [where(0.15)], [where(0.3)]]], tf.float32)
    ids = tf.constant([[[4], [4], [4]]])

    def middle_x(**kwargs):
        out = refinement.refine_objects(frames, tf.ones([1, 3, 1, 1]), start, z_pres, decode, render, steps=200,
                                        object_ids=ids, centres=centres, **kwargs)
        return float(spatial_transformer.where_to_transform(out["z_where"])[1][0, 1, 0, 0])

    assert abs(middle_x(motion_weight=1.0)) < 0.01  # From 0.15 to the track's midpoint 0.0.
    assert middle_x() > 0.08  # Each frame alone (measured: 0.11).
    with pytest.raises(ValueError, match="needs object_ids and centres"):
        refinement.refine_objects(frames, tf.ones([1, 3, 1, 1]), start, z_pres, decode, render, motion_weight=1.0)


def test_effective_motion_weight_is_off_without_refinement_and_the_package_default_when_unset():
    assert refinement.effective_motion_weight(0) == refinement.effective_motion_weight(0, 3.0) == 0.0
    assert refinement.effective_motion_weight(50) == refinement.MOTION_WEIGHT
    assert refinement.effective_motion_weight(50, 0) == 0.0 and refinement.effective_motion_weight(5, 2) == 2.0
