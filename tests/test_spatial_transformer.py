"""Tests for sqair_tf.spatial_transformer against an explicit per-pixel NumPy bilinear sampler."""
import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from sqair_tf import spatial_transformer as st


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bilinear_sample(image, py, px):
    """Samples image [h, w, C] at fractional pixel (py, px); each out-of-image neighbour contributes 0."""
    h, w = image.shape[:2]
    y0, x0 = math.floor(py), math.floor(px)
    ay, ax = py - y0, px - x0
    out = np.zeros(image.shape[2:], dtype=np.float64)
    for yy, wy in ((y0, 1.0 - ay), (y0 + 1, ay)):
        for xx, wx in ((x0, 1.0 - ax), (x0 + 1, ax)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * image[yy, xx]
    return out


def _np_transform(z_where, shift_range=1.0):
    scale = np.maximum(_sigmoid(z_where[:2]), 1e-4)
    shift = shift_range * np.tanh(z_where[2:] / shift_range)
    return scale, shift  # (x, y) each


def _np_extract(images, z_where, g, shift_range=1.0):
    """images [B, H, W, C], z_where [B, 4] -> [B, g, g, C], one pixel at a time."""
    b_size, h, w, c = images.shape
    out = np.zeros((b_size, g, g, c))
    for b in range(b_size):
        (sx, sy), (tx, ty) = _np_transform(z_where[b], shift_range)
        for i in range(g):
            for j in range(g):
                uy = -1.0 + 2.0 * i / (g - 1)
                ux = -1.0 + 2.0 * j / (g - 1)
                py = (sy * uy + ty + 1.0) * (h - 1) / 2.0
                px = (sx * ux + tx + 1.0) * (w - 1) / 2.0
                out[b, i, j] = _bilinear_sample(images[b], py, px)
    return out


def _np_render(glimpses, z_where, h, w, shift_range=1.0):
    """glimpses [B, g, g, C], z_where [B, 4] -> [B, h, w, C] by inverse warp."""
    b_size, g, _, c = glimpses.shape
    out = np.zeros((b_size, h, w, c))
    for b in range(b_size):
        (sx, sy), (tx, ty) = _np_transform(z_where[b], shift_range)
        for i in range(h):
            for j in range(w):
                vy = -1.0 + 2.0 * i / (h - 1)
                vx = -1.0 + 2.0 * j / (w - 1)
                py = ((vy - ty) / sy + 1.0) * (g - 1) / 2.0
                px = ((vx - tx) / sx + 1.0) * (g - 1) / 2.0
                out[b, i, j] = _bilinear_sample(glimpses[b], py, px)
    return out


def _random_where(rng, batch):
    """Logits giving glimpses that overlap the border in places (exercises zero padding)."""
    scale_logits = rng.uniform(-1.5, 1.5, size=(batch, 2))
    shift_logits = rng.uniform(-1.0, 1.0, size=(batch, 2))
    return np.concatenate([scale_logits, shift_logits], axis=-1)


def _distance_to_integer(x):
    return np.min(np.abs(x - np.round(x)))


class SpatialTransformerTest(tf.test.TestCase, parameterized.TestCase):

    def test_where_to_transform_values_and_order(self):
        logits = np.array([[0.3, -1.2, 0.5, -0.7]])
        scale, shift = st.where_to_transform(tf.constant(logits))
        self.assertAllClose(scale, _sigmoid(logits[:, :2]), atol=1e-14, rtol=0.0)
        self.assertAllClose(shift, np.tanh(logits[:, 2:]), atol=1e-14, rtol=0.0)

    def test_scale_floor_is_straight_through(self):
        logits = tf.constant([[-12.0, 0.0, 0.0, 0.0]], tf.float64)  # sigmoid(-12) ≈ 6e-6 < 1e-4
        with tf.GradientTape() as tape:
            tape.watch(logits)
            scale, _ = st.where_to_transform(logits)
            s_x = scale[0, 0]
        self.assertAllClose(s_x, 1e-4, atol=0.0, rtol=1e-12)
        sig = _sigmoid(-12.0)
        grad = tape.gradient(s_x, logits)
        self.assertAllClose(grad, [[sig * (1.0 - sig), 0.0, 0.0, 0.0]], rtol=1e-10, atol=0.0)

    @parameterized.parameters((7, 9, 4, 1), (11, 8, 5, 3), (50, 50, 20, 1))
    def test_extract_matches_numpy(self, h, w, g, c):
        rng = np.random.default_rng(h * 100 + g)
        images = rng.normal(size=(3, h, w, c))
        z_where = _random_where(rng, 3)
        got = st.extract_glimpses(tf.constant(images), tf.constant(z_where), g)
        self.assertEqual(got.shape, (3, g, g, c))
        self.assertAllClose(got, _np_extract(images, z_where, g), atol=1e-10, rtol=0.0)

    @parameterized.parameters((7, 9, 4, 1), (11, 8, 5, 3), (50, 50, 20, 1))
    def test_render_matches_numpy(self, h, w, g, c):
        rng = np.random.default_rng(h * 100 + g + 1)
        glimpses = rng.normal(size=(3, g, g, c))
        z_where = _random_where(rng, 3)
        got = st.render_glimpses(tf.constant(glimpses), tf.constant(z_where), (h, w))
        self.assertEqual(got.shape, (3, h, w, c))
        self.assertAllClose(got, _np_render(glimpses, z_where, h, w), atol=1e-10, rtol=0.0)

    def test_identity_transform_returns_input(self):
        # sigmoid(40) == 1.0 and tanh(0) == 0 exactly in float64: s = 1, t = 0.
        rng = np.random.default_rng(0)
        images = rng.normal(size=(2, 6, 6, 2))
        identity = tf.constant([[40.0, 40.0, 0.0, 0.0]] * 2, tf.float64)
        self.assertAllClose(st.extract_glimpses(tf.constant(images), identity, 6), images, atol=1e-12, rtol=0.0)
        self.assertAllClose(st.render_glimpses(tf.constant(images), identity, (6, 6)), images, atol=1e-12, rtol=0.0)

    def test_shift_by_one_pixel(self):
        # s = 1, G = H = W and t_x = 2/(W-1) (one pixel in normalised units): glimpse column j reads image
        # column j+1, the last column reads outside the image and is zero.
        rng = np.random.default_rng(1)
        w = 7
        z_where = tf.constant([[40.0, 40.0, np.arctanh(2.0 / (w - 1)), 0.0]], tf.float64)
        square = rng.uniform(0.5, 1.5, size=(1, w, w, 1))
        glimpse = st.extract_glimpses(tf.constant(square), z_where, w).numpy()
        self.assertAllClose(glimpse[:, :, :-1], square[:, :, 1:], atol=1e-12, rtol=0.0)
        self.assertAllClose(glimpse[:, :, -1], np.zeros((1, w, 1)), atol=1e-12, rtol=0.0)
        # Rendering moves content the other way: canvas column j shows glimpse column j-1.
        canvas = st.render_glimpses(tf.constant(square), z_where, (w, w)).numpy()
        self.assertAllClose(canvas[:, :, 1:], square[:, :, :-1], atol=1e-12, rtol=0.0)
        self.assertAllClose(canvas[:, :, 0], np.zeros((1, w, 1)), atol=1e-12, rtol=0.0)
        # A y shift moves rows.
        z_where_y = tf.constant([[40.0, 40.0, 0.0, np.arctanh(-2.0 / (w - 1))]], tf.float64)
        glimpse = st.extract_glimpses(tf.constant(square), z_where_y, w).numpy()
        self.assertAllClose(glimpse[:, 1:], square[:, :-1], atol=1e-12, rtol=0.0)
        self.assertAllClose(glimpse[:, 0], np.zeros((1, w, 1)), atol=1e-12, rtol=0.0)

    def test_half_scale_centred_glimpse(self):
        # s = 0.5, t = 0 on a 9x9 image with G = 5: grid u = -1..1 step 0.5 -> pixels 2, 3, 4, 5, 6.
        images = np.arange(81, dtype=np.float64).reshape(1, 9, 9, 1)
        z_where = tf.constant([[0.0, 0.0, 0.0, 0.0]], tf.float64)
        glimpse = st.extract_glimpses(tf.constant(images), z_where, 5)
        self.assertAllClose(glimpse, images[:, 2:7, 2:7], atol=1e-12, rtol=0.0)

    def test_arbitrary_leading_axes(self):
        rng = np.random.default_rng(2)
        images = rng.normal(size=(2, 3, 7, 9, 2))
        z_where = _random_where(rng, 6).reshape(2, 3, 4)
        got = st.extract_glimpses(tf.constant(images), tf.constant(z_where), 4)
        flat = st.extract_glimpses(
            tf.constant(images.reshape(6, 7, 9, 2)), tf.constant(z_where.reshape(6, 4)), 4)
        self.assertAllClose(got, tf.reshape(flat, (2, 3, 4, 4, 2)), atol=1e-14, rtol=0.0)
        rendered = st.render_glimpses(got, tf.constant(z_where), (7, 9))
        flat_rendered = st.render_glimpses(flat, tf.constant(z_where.reshape(6, 4)), (7, 9))
        self.assertAllClose(rendered, tf.reshape(flat_rendered, (2, 3, 7, 9, 2)), atol=1e-14, rtol=0.0)

    def test_leading_axes_broadcast(self):
        # N glimpses from one image per sequence: images [B, 1, H, W, C], z_where [B, N, 4].
        rng = np.random.default_rng(7)
        images = rng.normal(size=(2, 1, 7, 9, 1))
        z_where = _random_where(rng, 6).reshape(2, 3, 4)
        got = st.extract_glimpses(tf.constant(images), tf.constant(z_where), 4)
        tiled = st.extract_glimpses(tf.constant(np.repeat(images, 3, axis=1)), tf.constant(z_where), 4)
        self.assertEqual(got.shape, (2, 3, 4, 4, 1))
        self.assertAllClose(got, tiled, atol=1e-14, rtol=0.0)

    def test_float32_matches_float64(self):
        rng = np.random.default_rng(3)
        images = rng.normal(size=(4, 12, 10, 1))
        z_where = _random_where(rng, 4)
        ref = _np_extract(images, z_where, 5)
        got = st.extract_glimpses(tf.constant(images, tf.float32), tf.constant(z_where, tf.float32), 5)
        self.assertEqual(got.dtype, tf.float32)
        self.assertAllClose(got, ref, atol=1e-5)

    def test_dtype_mismatch_raises(self):
        with self.assertRaisesRegex(ValueError, "dtype"):
            st.extract_glimpses(tf.zeros((1, 5, 5, 1)), tf.zeros((1, 4), tf.float64), 3)

    def _check_positions_off_integers(self, z_where, n_out, n_src, render):
        """Finite differences are only valid away from the kernel's kinks (integer source pixels)."""
        for row in z_where:
            (sx, sy), (tx, ty) = _np_transform(row)
            for s, t in ((sx, tx), (sy, ty)):
                u = np.linspace(-1.0, 1.0, n_out)
                c = (u - t) / s if render else s * u + t
                self.assertGreater(_distance_to_integer((c + 1.0) * (n_src - 1) / 2.0), 1e-4)

    def test_extract_gradients(self):
        rng = np.random.default_rng(4)
        images = rng.normal(size=(2, 7, 9, 2))
        z_where = _random_where(rng, 2)
        self._check_positions_off_integers(z_where, 4, 7, render=False)
        self._check_positions_off_integers(z_where, 4, 9, render=False)

        def wrt_image(x):
            return st.extract_glimpses(x, tf.constant(z_where), 4)

        def wrt_where(w):
            return st.extract_glimpses(tf.constant(images), w, 4)

        for fn, x in ((wrt_image, images), (wrt_where, z_where)):
            theoretical, numerical = tf.test.compute_gradient(fn, [tf.constant(x)], delta=1e-6)
            self.assertAllClose(theoretical[0], numerical[0], atol=1e-7, rtol=1e-6)
            self.assertGreater(np.abs(theoretical[0]).max(), 1e-2)  # not a vacuous all-zero Jacobian

    def test_render_gradients(self):
        rng = np.random.default_rng(5)
        glimpses = rng.normal(size=(2, 4, 4, 1))
        z_where = _random_where(rng, 2)
        self._check_positions_off_integers(z_where, 7, 4, render=True)
        self._check_positions_off_integers(z_where, 9, 4, render=True)

        def wrt_glimpse(x):
            return st.render_glimpses(x, tf.constant(z_where), (7, 9))

        def wrt_where(w):
            return st.render_glimpses(tf.constant(glimpses), w, (7, 9))

        for fn, x in ((wrt_glimpse, glimpses), (wrt_where, z_where)):
            theoretical, numerical = tf.test.compute_gradient(fn, [tf.constant(x)], delta=1e-6)
            self.assertAllClose(theoretical[0], numerical[0], atol=1e-7, rtol=1e-6)
            self.assertGreater(np.abs(theoretical[0]).max(), 1e-2)

    @parameterized.parameters((tf.float32, 1e-4), (tf.float64, 1e-10))
    def test_jit_matches_eager(self, dtype, tol):
        rng = np.random.default_rng(6)
        images = tf.constant(rng.normal(size=(5, 12, 10, 1)), dtype)
        z_where = tf.constant(_random_where(rng, 5), dtype)

        def forward_and_grad(x, w):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                glimpses = st.extract_glimpses(x, w, 6)
                canvas = st.render_glimpses(glimpses, w, (12, 10))
                loss = tf.reduce_sum(canvas * x)
            return (glimpses, canvas) + tuple(tape.gradient(loss, [x, w]))

        eager = forward_and_grad(images, z_where)
        jitted = tf.function(forward_and_grad, jit_compile=True)(images, z_where)
        for a, b in zip(eager, jitted):
            self.assertAllClose(a, b, atol=tol, rtol=tol)

    def test_boxes_from_where_known_values(self):
        # H=40, W=50; s_x = 0.5 (logit 0), s_y = sigmoid(1), t_x = 0, t_y = tanh(0.5).
        z_where = tf.constant([[0.0, 1.0, 0.0, 0.5]], tf.float64)
        box = st.boxes_from_where(z_where, (40, 50)).numpy()[0]
        s_y, t_y = _sigmoid(1.0), np.tanh(0.5)
        y_min = 0.5 * 39 * (t_y - s_y + 1.0)
        expected = [y_min, 0.5 * 49 * 0.5, y_min + 41 * s_y, 0.5 * 49 * 0.5 + 51 * 0.5]
        self.assertAllClose(box, expected, atol=1e-12, rtol=0.0)
        self.assertAllClose(expected[1], 12.25)  # hand-computed: 0.5·49·(0 − 0.5 + 1)
        self.assertAllClose(expected[3], 37.75)  # 12.25 + 51·0.5

    def test_boxes_leading_axes(self):
        z_where = tf.zeros((2, 3, 4))
        self.assertEqual(st.boxes_from_where(z_where, (50, 50)).shape, (2, 3, 4))


if __name__ == "__main__":
    tf.test.main()


def test_shared_image_extraction_equals_extraction_from_tiled_images():
    """`extract_glimpses_shared` reads K boxes per image (any box axes after the first) exactly as tiling would."""
    rng = np.random.default_rng(5)
    images = tf.constant(rng.random((2, 9, 7, 2)))  # [B, H, W, C], float64
    z_where = tf.constant(rng.normal(size=(6, 3, 4)))  # [B·K, N, 4] with K = 3
    tiled = tf.repeat(images, 3, axis=0)[:, None]  # [B·K, 1, H, W, C]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z_where)
        shared = st.extract_glimpses_shared(images, z_where, 4)  # [B·K, N, G, G, C]
        expected = st.extract_glimpses(tiled, z_where, 4)
    assert shared.shape == (6, 3, 4, 4, 2)
    np.testing.assert_allclose(shared, expected, rtol=1e-12, atol=1e-12)
    weights = tf.constant(rng.normal(size=(6, 3, 4, 4, 2)))
    np.testing.assert_allclose(tape.gradient(shared, z_where, output_gradients=weights),
                               tape.gradient(expected, z_where, output_gradients=weights), rtol=1e-10, atol=1e-12)
    flat = st.extract_glimpses_shared(images, z_where[:, 0], 4)  # [B·K, G, G, C]: no box axis
    np.testing.assert_allclose(flat, expected[:, 0], rtol=1e-12, atol=1e-12)


def test_shift_range_lets_a_glimpse_centre_leave_the_canvas():
    """shift = c·tanh(logit/c): c = 1 is the paper's tanh op for op; with c = 2, extraction, rendering, the drawn
    composition and the boxes follow a centre up to one half-width beyond the canvas, as the NumPy sampler does."""
    logits = np.array([[0.3, -0.2, 3.0, -0.4], [1.0, 0.5, -2.5, 2.2]])  # [2, 4]: centres beyond the edge at c = 2
    scale, shift = st.where_to_transform(tf.constant(logits))
    np.testing.assert_array_equal(shift, tf.tanh(tf.constant(logits[:, 2:])))
    _, shift2 = st.where_to_transform(tf.constant(logits), shift_range=2.0)
    np.testing.assert_allclose(shift2, 2.0 * np.tanh(logits[:, 2:] / 2.0), rtol=1e-14)
    assert shift2.numpy()[0, 0] > 1.0 and shift2.numpy()[1, 1] > 1.0  # Beyond the canvas (|shift| ≤ 1 inside).

    rng = np.random.default_rng(11)
    images = rng.normal(size=(2, 11, 9, 1))
    np.testing.assert_allclose(st.extract_glimpses(tf.constant(images), tf.constant(logits), 5, shift_range=2.0),
                               _np_extract(images, logits, 5, shift_range=2.0), atol=1e-10)
    shared = st.extract_glimpses_shared(tf.constant(images), tf.constant(logits), 5, shift_range=2.0)
    np.testing.assert_allclose(shared, _np_extract(images, logits, 5, shift_range=2.0), atol=1e-10)
    glimpses = rng.normal(size=(2, 5, 5, 1))
    np.testing.assert_allclose(st.render_glimpses(tf.constant(glimpses), tf.constant(logits), (11, 9), 2.0),
                               _np_render(glimpses, logits, 11, 9, shift_range=2.0), atol=1e-10)
    # The first glimpse's sampled centre x = 0.5·(W − 1)·(t_x + 1) = box x_min + 0.5·(W − 1)·s_x: inside the
    # last column (W − 1 = 8) at c = 1, beyond it at c = 2.
    s_x = _sigmoid(0.3)
    centre_x = lambda box: box[1] + 0.5 * 8 * s_x  # noqa: E731
    assert centre_x(st.boxes_from_where(tf.constant(logits), (11, 9)).numpy()[0]) < 8.0
    box = st.boxes_from_where(tf.constant(logits), (11, 9), shift_range=2.0).numpy()[0]
    np.testing.assert_allclose(centre_x(box), 0.5 * 8 * (shift2.numpy()[0, 0] + 1.0), rtol=1e-12)
    assert centre_x(box) > 8.0
