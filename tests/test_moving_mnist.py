"""Statistics and ground truth of the moving multi-MNIST generator (BUILD.md O1)."""

import dataclasses

import numpy as np
import pytest

from data_pipelines import digits as digits_lib
from data_pipelines import moving_mnist
from data_pipelines.errors import DataError


@pytest.fixture(scope="module")
def train_digits():
    return digits_lib.load_digits("embedded", "train")


@pytest.fixture(scope="module")
def paper_chunk(train_digits):
    return moving_mnist.generate_chunk(moving_mnist.preset("paper"), train_digits, 3000, np.random.default_rng(7))


def _render_digit(digits, digit_index, corner, size):
    """Slow reference: paste one tight crop at a rounded corner on an empty canvas."""
    canvas = np.zeros((size + 28, size + 28), np.uint8)
    y, x = (int(v) for v in np.rint(corner))
    canvas[y:y + 28, x:x + 28] = digits.templates[digit_index]
    return canvas[:size, :size]


def test_count_distribution_is_uniform_over_0_1_2(paper_chunk):
    counts = np.bincount(paper_chunk["count"], minlength=3)
    assert counts.sum() == 3000 and len(counts) == 3
    # Each count has p = 1/3: the std of a count is sqrt(3000·1/3·2/3) ≈ 25.8; allow 4 sigma.
    assert np.all(np.abs(counts - 1000) < 4 * 25.8), counts


def test_hard_preset_has_up_to_three_digits(train_digits):
    out = moving_mnist.generate_chunk(moving_mnist.preset("hard"), train_digits, 2000, np.random.default_rng(1))
    counts = np.bincount(out["count"], minlength=4)
    assert len(counts) == 4 and np.all(np.abs(counts - 500) < 4 * np.sqrt(2000 * 0.25 * 0.75)), counts
    assert out["labels"].shape == (2000, 3)


def test_labels_ids_and_counts_agree(paper_chunk):
    present = paper_chunk["labels"] >= 0
    np.testing.assert_array_equal(present.sum(axis=1), paper_chunk["count"])
    np.testing.assert_array_equal(paper_chunk["object_ids"] >= 0, present)
    # Absent slots are -1 (never 0, which is a digit class); present ids are the slot index.
    assert np.all(paper_chunk["labels"][~present] == -1)
    np.testing.assert_array_equal(paper_chunk["object_ids"][present], np.nonzero(present)[1])
    # Present slots are the first `count` slots.
    np.testing.assert_array_equal(present, np.arange(2)[None] < paper_chunk["count"][:, None])
    np.testing.assert_array_equal(paper_chunk["visible"].sum(axis=2), paper_chunk["visible_count"])
    assert np.all(paper_chunk["visible"][~np.broadcast_to(present[:, None], paper_chunk["visible"].shape)] == 0)
    assert set(np.unique(paper_chunk["labels"][present])) == set(range(10))


def test_first_frame_digits_fully_inside_and_not_overlapping(paper_chunk, train_digits):
    two = np.nonzero(paper_chunk["count"] == 2)[0]
    assert len(two) > 500
    boxes = paper_chunk["boxes"][two, 0]  # [m, 2, 4]
    # Fully inside: the first-frame box is the whole tight crop (its size), never clipped.
    assert np.all(boxes[..., :2] >= 0) and np.all(boxes[..., 2:] <= 50)
    inter_y = np.minimum(boxes[:, 0, 2], boxes[:, 1, 2]) > np.maximum(boxes[:, 0, 0], boxes[:, 1, 0])
    inter_x = np.minimum(boxes[:, 0, 3], boxes[:, 1, 3]) > np.maximum(boxes[:, 0, 1], boxes[:, 1, 1])
    assert not np.any(inter_y & inter_x)
    assert np.all(paper_chunk["visible"][two, 0] == 1)


def test_hard_preset_allows_first_frame_overlap(train_digits):
    config = moving_mnist.preset("hard", count_probs=(0.0, 0.0, 1.0))
    out = moving_mnist.generate_chunk(config, train_digits, 1000, np.random.default_rng(2))
    b = out["boxes"][:, 0]
    inter = ((np.minimum(b[:, 0, 2], b[:, 1, 2]) > np.maximum(b[:, 0, 0], b[:, 1, 0]))
             & (np.minimum(b[:, 0, 3], b[:, 1, 3]) > np.maximum(b[:, 0, 1], b[:, 1, 1])))
    assert inter.mean() > 0.05  # Uniform placement of two ~20 px digits in 50 px overlaps often.


def test_corners_bounce_inside_0_to_canvas_and_digits_come_back(paper_chunk):
    corners = paper_chunk["corners"]
    assert corners.min() >= 0.0 and corners.max() <= 50.0
    present = paper_chunk["labels"] >= 0
    c = corners[np.broadcast_to(present[:, None, :, None], corners.shape)].reshape(-1)
    # Digits leave through the bottom/right edge (corner beyond canvas − crop size) but never the top/left.
    assert np.any(c > 40.0)
    # Speed bound: a mirror never moves a corner further than its velocity.
    step = np.abs(np.diff(corners, axis=1))
    assert step.max() <= 10.0 + 1e-4  # float32 storage


def test_frames_are_pixelwise_max_of_the_digits(paper_chunk, train_digits):
    counts, digit_index = paper_chunk["count"], paper_chunk["digit_index"]
    np.testing.assert_array_equal(train_digits.labels[digit_index[digit_index >= 0]],
                                  paper_chunk["labels"][digit_index >= 0])
    for i in np.nonzero(counts == 2)[0][:40]:
        for t in range(10):
            layers = [_render_digit(train_digits, digit_index[i, j], paper_chunk["corners"][i, t, j], 50)
                      for j in range(2)]
            np.testing.assert_array_equal(paper_chunk["frames"][i, t], np.maximum(*layers))
    for i in np.nonzero(counts == 2)[0]:
        assert digit_index[i, 0] != digit_index[i, 1]  # Distinct digits within a sequence.
    blank = np.nonzero(counts == 0)[0]
    assert np.all(paper_chunk["frames"][blank] == 0)


def test_boxes_are_the_bounding_boxes_of_each_digits_drawn_pixels(paper_chunk, train_digits):
    counts, digit_index = paper_chunk["count"], paper_chunk["digit_index"]
    checked_partial = 0
    for i in np.nonzero(counts >= 1)[0][:300]:
        for t in range(10):
            for j in range(counts[i]):
                layer = _render_digit(train_digits, digit_index[i, j], paper_chunk["corners"][i, t, j], 50)
                ys, xs = np.nonzero(layer)
                if ys.size == 0:
                    assert paper_chunk["visible"][i, t, j] == 0
                    np.testing.assert_array_equal(paper_chunk["boxes"][i, t, j], 0)
                    continue
                assert paper_chunk["visible"][i, t, j] == 1
                expected = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
                np.testing.assert_array_equal(paper_chunk["boxes"][i, t, j], expected)
                checked_partial += int(expected[2] == 50 or expected[3] == 50)
    assert checked_partial > 50  # Digits clipped at the bottom/right edge were covered.


def test_same_seed_same_data_other_seed_other_data(train_digits):
    config = moving_mnist.preset("paper")
    a = moving_mnist.generate_chunk(config, train_digits, 64, np.random.default_rng([3, 0]))
    b = moving_mnist.generate_chunk(config, train_digits, 64, np.random.default_rng([3, 0]))
    c = moving_mnist.generate_chunk(config, train_digits, 64, np.random.default_rng([4, 0]))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["frames"], c["frames"])


def test_other_geometry_is_a_parameter(train_digits):
    config = moving_mnist.preset("paper", canvas_size=64, num_frames=4, count_probs=(0.0, 0.0, 0.0, 1.0))
    out = moving_mnist.generate_chunk(config, train_digits, 20, np.random.default_rng(0))
    assert out["frames"].shape == (20, 4, 64, 64)
    assert np.all(out["count"] == 3) and out["corners"].max() <= 64


@pytest.mark.parametrize("field,value,needle", [
    ("canvas_size", 20, "canvas_size"),
    ("num_frames", 0, "num_frames"),
    ("count_probs", (0.5, 0.6), "sum to 1"),
    ("count_probs", (-0.5, 1.5), "non-negative"),
    ("max_speed", -1.0, "max_speed"),
    ("placement_retries", -2, "placement_retries"),
])
def test_impossible_parameters_are_refused_by_name(field, value, needle):
    with pytest.raises(DataError, match=needle):
        dataclasses.replace(moving_mnist.preset("paper"), **{field: value})


def test_negative_count_and_unknown_preset(train_digits):
    with pytest.raises(DataError, match="≥ 0"):
        moving_mnist.generate_chunk(moving_mnist.preset("paper"), train_digits, -1, np.random.default_rng(0))
    with pytest.raises(DataError, match="unknown moving-MNIST preset"):
        moving_mnist.preset("nope")
