"""Tests for sqair_tf.glimpse: encoder/mask/decoder networks and the additive renderer."""
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from scipy import ndimage

from sqair_tf import glimpse
from sqair_tf import spatial_transformer

_IDENTITY = 40.0  # sigmoid(40) == 1.0 in float64: a scale logit giving s = 1 exactly.


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _np_mlp(mlp, x):
    for layer in mlp.hidden_layers:
        x = _elu(x @ layer.kernel.numpy() + layer.bias.numpy())
    return x @ mlp.output_layer.kernel.numpy() + mlp.output_layer.bias.numpy()


class GlimpseEncoderTest(tf.test.TestCase):

    def test_matches_numpy_with_and_without_mask(self):
        enc = glimpse.GlimpseEncoder(glimpse_size=3, num_channels=2, z_what_dim=4, hidden_sizes=(5,),
                                     dtype="float64")
        rng = np.random.default_rng(0)
        g = rng.normal(size=(6, 3, 3, 2))
        mask = rng.uniform(size=(6, 3, 3, 1))
        enc(tf.constant(g))  # build
        for m in (None, mask):
            masked = g if m is None else g * m
            stats = _np_mlp(enc.mlp, masked.reshape(6, 18))
            loc, scale = enc(tf.constant(g), glimpse_mask=None if m is None else tf.constant(m))
            self.assertAllClose(loc, stats[:, :4], atol=1e-12, rtol=0.0)
            self.assertAllClose(scale, _softplus(stats[:, 4:]) + 0.01, atol=1e-12, rtol=0.0)
        # The mask really enters: a zero mask gives the encoding of an empty glimpse.
        loc_zero, _ = enc(tf.constant(g), glimpse_mask=tf.zeros((6, 3, 3, 1), tf.float64))
        loc_empty, _ = enc(tf.zeros((6, 3, 3, 2), tf.float64))
        self.assertAllClose(loc_zero, loc_empty)
        self.assertNotAllClose(loc_zero, enc(tf.constant(g))[0])

    def test_shapes_leading_axes_and_parameter_count(self):
        enc = glimpse.GlimpseEncoder()  # paper sizes: 400 -> 256 -> 256 -> 100
        loc, scale = enc(tf.random.normal((2, 3, 20, 20, 1)))
        self.assertEqual(loc.shape, (2, 3, 50))
        self.assertEqual(scale.shape, (2, 3, 50))
        self.assertGreater(float(tf.reduce_min(scale)), 0.01)
        self.assertEqual(enc.count_params(), 400 * 256 + 256 + 256 * 256 + 256 + 256 * 100 + 100)  # BUILD.md O2.12

    def test_wrong_glimpse_shape_raises(self):
        enc = glimpse.GlimpseEncoder(glimpse_size=4, z_what_dim=2, hidden_sizes=(3,))
        with self.assertRaisesRegex(ValueError, "glimpses of shape"):
            enc(tf.zeros((2, 5, 5, 1)))


class GlimpseMaskTest(tf.test.TestCase):

    def test_values_shape_and_initial_bias(self):
        mask = glimpse.GlimpseMask(glimpse_size=4, hidden_sizes=(6,), dtype="float64")
        state = np.random.default_rng(1).normal(size=(3, 7))
        got = mask(tf.constant(state))
        self.assertEqual(got.shape, (3, 4, 4, 1))
        self.assertAllClose(got, _sigmoid(_np_mlp(mask.mlp, state)).reshape(3, 4, 4, 1), atol=1e-12, rtol=0.0)
        # A zero temporal state gives ELU(0) = 0 hidden units, so the mask is sigmoid(bias init 1).
        self.assertAllClose(mask(tf.zeros((2, 7), tf.float64)), np.full((2, 4, 4, 1), _sigmoid(1.0)))

    def test_parameter_count(self):
        mask = glimpse.GlimpseMask()
        mask(tf.zeros((1, 256)))
        self.assertEqual(mask.count_params(), 256 * 128 + 128 + 128 * 400 + 400)  # BUILD.md O2.12


class GlimpseDecoderTest(tf.test.TestCase):

    def test_matches_numpy_and_output_scale(self):
        dec = glimpse.GlimpseDecoder(glimpse_size=3, num_channels=2, hidden_sizes=(5, 4), dtype="float64")
        z_what = np.random.default_rng(2).normal(size=(2, 4, 6))
        got = dec(tf.constant(z_what))
        self.assertEqual(got.shape, (2, 4, 3, 3, 2))
        self.assertAllClose(dec.output_scale, 0.25)
        expected = 0.25 * _np_mlp(dec.mlp, z_what).reshape(2, 4, 3, 3, 2)
        self.assertAllClose(got, expected, atol=1e-12, rtol=0.0)
        dec.output_scale.assign(1.0)
        self.assertAllClose(dec(tf.constant(z_what)), 4.0 * expected, atol=1e-12, rtol=0.0)

    def test_output_is_linear_not_squashed(self):
        dec = glimpse.GlimpseDecoder(glimpse_size=2, hidden_sizes=(3,))
        out = dec(tf.random.normal((256, 50), stddev=30.0))
        self.assertLess(float(tf.reduce_min(out)), 0.0)
        self.assertGreater(float(tf.reduce_max(tf.abs(out))), 1.0)

    def test_decoder_block_parameter_count(self):
        # BUILD.md O2.12: MLP 50→256→256→400, output_scale and the 50×50×1 mean image = 184,149.
        dec = glimpse.GlimpseDecoder()
        renderer = glimpse.Renderer()
        glimpses = dec(tf.zeros((2, 3, 50)))
        renderer(glimpses, tf.zeros((2, 3, 4)), tf.ones((2, 3)))
        self.assertEqual(dec.count_params() + renderer.count_params(), 184_149)
        self.assertLen(dec.trainable_weights + renderer.trainable_weights, 8)


class RendererTest(tf.test.TestCase, parameterized.TestCase):

    def _np_compose(self, glimpses, z_where, z_pres, mean):
        h, w, _ = mean.shape
        canvas = np.zeros(glimpses.shape[:1] + mean.shape)
        coverage = np.zeros(glimpses.shape[:1] + (h, w, 1))
        for n in range(glimpses.shape[1]):
            pres = z_pres[:, n, None, None, None]
            canvas += pres * spatial_transformer.render_glimpses(glimpses[:, n], z_where[:, n], (h, w)).numpy()
            ones = np.ones(glimpses[:, n].shape[:-1] + (1,))
            coverage += pres * spatial_transformer.render_glimpses(ones, z_where[:, n], (h, w)).numpy()
        mask = _sigmoid(-10.0 + 20.0 * coverage)
        return canvas + mean * mask, mask

    def test_compose_matches_reference(self):
        rng = np.random.default_rng(3)
        glimpses = rng.normal(size=(4, 3, 5, 5, 2))
        z_where = np.concatenate([rng.uniform(-1, 1, (4, 3, 2)), rng.uniform(-1, 1, (4, 3, 2))], axis=-1)
        z_pres = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0]], np.float64)
        mean = rng.uniform(size=(9, 8, 2))
        canvas, mask = glimpse.compose(glimpses, z_where, z_pres, mean)
        expected_canvas, expected_mask = self._np_compose(glimpses, z_where, z_pres, mean)
        self.assertEqual(canvas.shape, (4, 9, 8, 2))
        self.assertEqual(mask.shape, (4, 9, 8, 1))
        self.assertAllClose(canvas, expected_canvas, atol=1e-12, rtol=0.0)
        self.assertAllClose(mask, expected_mask, atol=1e-12, rtol=0.0)

    def test_all_absent_gives_masked_mean_image(self):
        mean = np.random.default_rng(4).uniform(size=(6, 7, 1))
        renderer = glimpse.Renderer(image_shape=(6, 7, 1), mean_image_init=mean, dtype="float64")
        glimpses = tf.random.normal((2, 3, 4, 4, 1), dtype=tf.float64) * 10.0
        z_where = tf.random.normal((2, 3, 4), dtype=tf.float64)
        canvas = renderer(glimpses, z_where, tf.zeros((2, 3), tf.float64))
        self.assertAllClose(canvas, np.broadcast_to(mean * _sigmoid(-10.0), (2, 6, 7, 1)), atol=1e-15, rtol=0.0)

    def test_absent_slots_contribute_nothing(self):
        rng = np.random.default_rng(5)
        glimpses = rng.normal(size=(2, 3, 4, 4, 1))
        z_where = rng.normal(size=(2, 3, 4))
        mean = rng.uniform(size=(6, 6, 1))
        z_pres = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        full, full_mask = glimpse.compose(glimpses, z_where, z_pres, mean)
        present = [0, 2]  # the single present slot of each sequence
        alone, alone_mask = glimpse.compose(
            glimpses[[0, 1], present][:, None], z_where[[0, 1], present][:, None], np.ones((2, 1)), mean)
        self.assertAllClose(full, alone, atol=1e-14, rtol=0.0)
        self.assertAllClose(full_mask, alone_mask, atol=1e-14, rtol=0.0)

    def test_hand_built_composition(self):
        # 5×5 canvas, G = 5, s = 1. Slot 0 at t = 0 (covers everything); slot 1 shifted right by one pixel
        # (covers columns 1..4); slot 2 absent with huge values.
        w = 5
        g0 = np.full((w, w, 1), 0.5)
        g1 = np.arange(w * w, dtype=np.float64).reshape(w, w, 1)
        g2 = np.full((w, w, 1), 1e6)
        shift = np.arctanh(2.0 / (w - 1))
        z_where = np.array([[[_IDENTITY, _IDENTITY, 0.0, 0.0],
                             [_IDENTITY, _IDENTITY, shift, 0.0],
                             [_IDENTITY, _IDENTITY, 0.0, 0.0]]])
        mean = np.full((w, w, 1), 2.0)
        canvas, mask = glimpse.compose(np.stack([g0, g1, g2])[None], z_where, np.array([[1.0, 1.0, 0.0]]), mean)
        canvas, mask = canvas.numpy()[0], mask.numpy()[0]
        # Column 0: only slot 0 writes (coverage 1); columns 1..4: both (coverage 2).
        self.assertAllClose(mask[:, 0], np.full((w, 1), _sigmoid(10.0)), atol=1e-12, rtol=0.0)
        self.assertAllClose(mask[:, 1:], np.full((w, w - 1, 1), _sigmoid(30.0)), atol=1e-12, rtol=0.0)
        self.assertAllClose(canvas[:, 0], 0.5 + 2.0 * _sigmoid(10.0) * np.ones((w, 1)), atol=1e-12, rtol=0.0)
        self.assertAllClose(canvas[:, 1:], 0.5 + g1[:, :-1] + 2.0 * _sigmoid(30.0), atol=1e-12, rtol=0.0)

    def test_mean_image_init_and_gradients(self):
        mean = np.random.default_rng(6).uniform(size=(5, 6, 1)).astype(np.float32)
        renderer = glimpse.Renderer(image_shape=(5, 6, 1), mean_image_init=mean)
        self.assertAllClose(renderer.mean_image, mean)
        dec = glimpse.GlimpseDecoder(glimpse_size=3, hidden_sizes=(4,))
        z_where = tf.constant([[[0.5, 0.5, 0.1, -0.2], [0.0, 0.3, -0.4, 0.4]]])
        with tf.GradientTape() as tape:
            canvas = renderer(dec(tf.random.normal((1, 2, 50))), z_where, tf.constant([[1.0, 1.0]]))
            loss = tf.reduce_sum(tf.square(canvas))
        grads = tape.gradient(loss, dec.trainable_weights + renderer.trainable_weights)
        for var, grad in zip(dec.trainable_weights + renderer.trainable_weights, grads):
            self.assertIsNotNone(grad, msg=var.path)
            self.assertGreater(float(tf.reduce_max(tf.abs(grad))), 0.0, msg=var.path)

    def test_jit_matches_eager(self):
        renderer = glimpse.Renderer(image_shape=(8, 9, 1), mean_image_init=np.full((8, 9, 1), 0.2))
        rng = np.random.default_rng(7)
        args = (tf.constant(rng.normal(size=(3, 2, 4, 4, 1)), tf.float32),
                tf.constant(rng.normal(size=(3, 2, 4)), tf.float32),
                tf.constant([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
        eager = renderer(*args)
        jitted = tf.function(renderer.call, jit_compile=True)(*args)
        self.assertAllClose(eager, jitted, atol=1e-5)

    @parameterized.parameters(((5, 5),), ((1, 5, 1),), ((5, 5, 0),))
    def test_invalid_image_shape(self, shape):
        with self.assertRaises(ValueError):
            glimpse.Renderer(image_shape=shape)

    def test_mean_image_init_shape_checked(self):
        with self.assertRaisesRegex(ValueError, "mean_image_init"):
            glimpse.Renderer(image_shape=(5, 5, 1), mean_image_init=np.zeros((5, 5)))



class DrawnBoxesTest(tf.test.TestCase):
    """`drawn_boxes`: the box of the canvas pixels an object renders above the threshold, max exclusive."""

    def _where(self, shift_x_pixels=0.0, size=20):
        # Scale logit 20: sigmoid = 1.0 in float32, so a G = H glimpse renders 1:1; the shift moves it by
        # shift·(size − 1)/2 pixels.
        return [20.0, 20.0, float(np.arctanh(shift_x_pixels / ((size - 1) / 2))), 0.0]

    def test_hand_built_boxes(self):
        g = np.zeros([4, 20, 20, 1], np.float32)
        g[0, 2:6, 3:8] = 0.5  # Rows 2–5, columns 3–7 → (2, 3, 6, 8).
        g[1, 2:6, 6:14] = 0.5  # Shifted 8 px right: columns 14–21, clipped to the canvas → (2, 14, 6, 20).
        g[2, 2:6, 3:8] = 0.05  # Below the threshold: draws nothing → zeros.
        g[3, 2:6, 3:8] = 0.5  # Absent → zeros.
        z_where = np.array([self._where(), self._where(8.0), self._where(), self._where()], np.float32)
        z_pres = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
        boxes = glimpse.drawn_boxes(g[None], z_where[None], z_pres[None], (20, 20)).numpy()[0]
        np.testing.assert_array_equal(boxes, [[2, 3, 6, 8], [2, 14, 6, 20], [0, 0, 0, 0], [0, 0, 0, 0]])

    def test_drawn_box_lies_inside_the_glimpse_box_and_the_canvas(self):
        rng = np.random.default_rng(3)
        g = rng.random([2, 3, 6, 6, 1]).astype(np.float32)
        z_where = rng.normal(size=[2, 3, 4]).astype(np.float32)
        z_pres = np.ones([2, 3], np.float32)
        drawn = glimpse.drawn_boxes(g, z_where, z_pres, (16, 12)).numpy()
        footprint = spatial_transformer.boxes_from_where(tf.constant(z_where), (16, 12)).numpy()
        drew = drawn[..., 2] > drawn[..., 0]
        assert drew.any()
        assert (drawn[..., :2] >= 0).all() and (drawn[..., 2] <= 16).all() and (drawn[..., 3] <= 12).all()
        # The rendered support starts within a pixel of the glimpse's first sampled centre and ends before the
        # footprint's end (which reaches 2·s past the last centre).
        assert (drawn[drew][:, :2] >= np.floor(footprint[drew][:, :2])).all()
        assert (drawn[drew][:, 2:] <= np.ceil(footprint[drew][:, 2:]) + 1).all()

    def test_hand_built_explained_boxes(self):
        """With the observed frame, each object's box covers the frame's foreground pixels where it renders above
        `EXPLAINED_THRESHOLD` and brightest: overlaps go to the brighter object, the faint halo and pixels no
        object renders are no one's, and an object over empty background explains nothing."""
        g = np.zeros([3, 20, 20, 1], np.float32)
        g[0, 1:7, 2:9] = 0.05  # Object 0's faint halo, rows 1–6 × columns 2–8 (above 0.01) ...
        g[0, 2:6, 3:8] = 0.5  # ... around its body, rows 2–5 × columns 3–7.
        g[1, 4:10, 6:12] = 0.8  # Object 1, brighter, overlapping object 0 at rows 4–5 × columns 6–7.
        g[2, 12:15, 0:4] = 0.9  # Object 2 draws where the frame is empty.
        frame = np.zeros([20, 20, 1], np.float32)
        frame[3:6, 2:8] = 1.0  # Digit 0, rows 3–5 × columns 2–7 (column 2 only under object 0's halo).
        frame[5:9, 7:11] = 1.0  # Digit 1, rows 5–8 × columns 7–10.
        frame[15, 15] = 1.0  # A pixel no object renders.
        z_where = np.array([self._where()] * 3, np.float32)
        z_pres = np.ones([3], np.float32)
        explained = glimpse.drawn_boxes(g[None], z_where[None], z_pres[None], (20, 20), frames=frame[None])
        # Object 0 keeps row 3 × columns 2–7 and rows 4–5 × columns 2–5; object 1 takes rows 4–5 × columns
        # 6–7 of digit 0 (it renders 0.8 there against 0.5) and all of digit 1.
        np.testing.assert_array_equal(explained.numpy()[0], [[3, 2, 6, 8], [4, 6, 9, 11], [0, 0, 0, 0]])
        drawn = glimpse.drawn_boxes(g[None], z_where[None], z_pres[None], (20, 20)).numpy()[0]
        np.testing.assert_array_equal(drawn, [[2, 3, 6, 8], [4, 6, 10, 12], [12, 0, 15, 4]])

    def test_hand_built_blob_goes_to_its_majority(self):
        """Object 0 explains its digit A and pieces of digit B, apart from A; object 1 the rest of B, more than
        `MAJORITY_SHARE` of B's blob: the pieces go to object 1, and object 0's box shrinks to A. Object 2, which
        explains nothing but 2 pixels of B, keeps them. A pixel touching B only at a corner is part of B's blob
        (8-connected)."""
        g = np.zeros([3, 20, 20, 1], np.float32)
        g[0, 2:6, 2:6] = 0.9  # Object 0: digit A (rows 2–5 × columns 2–5) ...
        g[0, 10, 10:12] = 0.9  # ... and 2 pixels of digit B.
        g[0, 16, 15] = 0.9  # ... and a pixel touching B only at a corner.
        g[1, 10:16, 10:15] = 0.5  # Object 1: the rest of digit B (26 of its 31 pixels) ...
        g[2, 15, 13:15] = 0.7  # ... but 2 that object 2 explains, and nothing else: it keeps them.
        frame = np.zeros([20, 20, 1], np.float32)
        frame[2:6, 2:6] = 1.0
        frame[10:16, 10:15] = 1.0
        frame[16, 15] = 1.0
        z_where = np.array([self._where()] * 3, np.float32)
        explained = glimpse.drawn_boxes(g[None], z_where[None], np.ones([1, 3], np.float32), (20, 20),
                                        frames=frame[None])
        np.testing.assert_array_equal(explained.numpy()[0], [[2, 2, 6, 6], [10, 10, 17, 16], [15, 13, 16, 15]])

    def test_foreground_components_match_scipy(self):
        """Random masks: pixels share a label exactly when scipy's 8-connected labelling puts them in one
        component, the label is the component's smallest flat index, and the background's is H · W."""
        rng = np.random.default_rng(3)
        masks = rng.random([2, 3, 17, 13]) > 0.55
        masks[0, 0] = False
        masks[0, 1, 2:15, 6] = True  # A long component, for the pointer jumping.
        labels = glimpse.foreground_components(tf.constant(masks)).numpy()
        index = np.arange(17 * 13).reshape(17, 13)
        for b, t in np.ndindex(2, 3):
            expected, count = ndimage.label(masks[b, t], structure=np.ones([3, 3]))
            np.testing.assert_array_equal(labels[b, t][~masks[b, t]], 17 * 13)
            for blob in range(1, count + 1):
                np.testing.assert_array_equal(labels[b, t][expected == blob], index[expected == blob].min())
        assert len(np.unique(labels)) > 20  # Many components.

    def test_explained_boxes_match_a_numpy_reference(self):
        """Random glimpses, poses and presences over frames with a zero background: the rule computed in NumPy
        from the rendered glimpses."""
        rng = np.random.default_rng(5)
        g = rng.random([2, 3, 4, 6, 6, 2]).astype(np.float32) * (rng.random([2, 3, 4, 1, 1, 1]) > 0.3)
        z_where = rng.normal(size=[2, 3, 4, 4]).astype(np.float32)
        z_pres = (rng.random([2, 3, 4]) > 0.2).astype(np.float32)
        frames = (rng.random([2, 3, 16, 12, 2]) * (rng.random([2, 3, 16, 12, 1]) > 0.6)).astype(np.float32)
        boxes = glimpse.drawn_boxes(g, z_where, z_pres, (16, 12), frames=frames).numpy()
        rendered = spatial_transformer.render_glimpses(g, z_where, (16, 12)).numpy().max(-1) * z_pres[..., None, None]
        foreground = frames.max(-1) > glimpse.FOREGROUND_THRESHOLD  # [2, 3, 16, 12]
        mine = ((rendered > glimpse.EXPLAINED_THRESHOLD) & (rendered >= rendered.max(2, keepdims=True))
                & foreground[:, :, None])
        given = kept = 0
        for b, t in np.ndindex(2, 3):  # A blob with a majority owner is given to it, but for objects it would empty.
            labels, count = ndimage.label(foreground[b, t], structure=np.ones([3, 3]))
            before = mine[b, t].copy()
            for blob in range(1, count + 1):
                inside = labels == blob
                share = (before & inside).sum((1, 2))
                if share.sum() and share.max() >= glimpse.MAJORITY_SHARE * share.sum():
                    for n in range(before.shape[0]):
                        if n == share.argmax() or not share[n]:
                            continue
                        if (before[n] & ~inside).any():
                            mine[b, t][n][inside] = False
                            given += 1
                        else:
                            kept += 1
                    mine[b, t][share.argmax()] |= before.any(0) & inside
        expected = np.zeros_like(boxes)
        for index in np.ndindex(*mine.shape[:3]):
            rows, cols = np.nonzero(mine[index])
            if rows.size:
                expected[index] = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
        assert (expected[..., 2] > 0).sum() >= 6 and (expected[..., 2] == 0).sum() >= 3  # Both kinds occur.
        assert given >= 2 and kept >= 1  # Pixels given away and pixels kept both occur.
        np.testing.assert_array_equal(boxes, expected)


if __name__ == "__main__":
    tf.test.main()
