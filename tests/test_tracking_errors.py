"""`benchmarks/tracking_errors.py`'s identity switches by cause: hand-built switches of each kind, and the total
against TrackEval's own IDSW on random tracks."""

import os
import sys

import numpy as np
import pytest

from evaluation import tracking_metrics

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import tracking_errors  # noqa: E402

A = [0, 0, 10, 10]  # (y_min, x_min, y_max, x_max)
B_APART = [20, 20, 30, 30]
B_CROSSING = [0, 5, 10, 15]  # overlaps A: IoU 50 / 150
NEAR_A = [0, 4, 10, 14]  # on A at IoU 60 / 140 < 0.5
FAR = [40, 40, 50, 50]
EMPTY = [0, 0, 0, 0]


def _seq(gt_boxes, pred_boxes, pred_ids, pred_present, gt_present=None):
    gt_boxes = np.asarray(gt_boxes, np.float32)  # [T, S, 4]
    return {"gt_boxes": gt_boxes, "gt_ids": np.arange(gt_boxes.shape[1], dtype=np.int32),
            "gt_present": np.ones(gt_boxes.shape[:2], bool) if gt_present is None else np.asarray(gt_present),
            "pred_boxes": np.asarray(pred_boxes, np.float32), "pred_ids": np.asarray(pred_ids, np.int32),
            "pred_present": np.asarray(pred_present, np.float32)}


def _only(counts):
    """The non-zero cells of a `switch_causes` result."""
    return {key: n for key, n in counts.items() if n}


def _swap(b_box):
    """Objects 10 and 11 follow digits A and B for two frames, then trade places."""
    gt = [[A, b_box]] * 3
    pred = [[A, b_box], [A, b_box], [b_box, A]]
    return _seq(gt, pred, [[10, 11]] * 3, np.ones([3, 2]))


def test_a_swap_of_two_digits_apart_is_two_switches_to_objects_that_tracked_the_other_digit():
    counts = tracking_errors.switch_causes([_swap(B_APART)])
    assert _only(counts) == {("matched to another digit, apart", "elsewhere"): 2}


def test_a_swap_where_the_digits_cross_is_counted_as_a_crossing():
    counts = tracking_errors.switch_causes([_swap(B_CROSSING)])
    # Each digit's old object now sits on the other digit, which overlaps it: "on the digit" at IoU < 0.5.
    assert _only(counts) == {("matched to another digit, the two overlap", "on the digit, IoU < 0.5"): 2}


def test_a_second_object_on_the_digit_that_takes_it_over():
    gt = [[A]] * 2
    pred = [[A, NEAR_A], [B_CROSSING, A]]  # object 11 sits on A unmatched, then fits it better than object 10
    counts = tracking_errors.switch_causes([_seq(gt, pred, [[10, 11]] * 2, np.ones([2, 2]))])
    assert _only(counts) == {("on this digit at t − 1, unmatched", "on the digit, IoU < 0.5"): 1}


def test_a_lost_object_replaced_by_a_new_one_and_an_object_from_elsewhere():
    gt = [[A]] * 3
    pred = [[A, EMPTY, FAR], [EMPTY, A, FAR], [EMPTY, FAR, A]]
    ids = [[10, -1, 12], [10, 11, 12], [10, 11, 12]]
    present = [[1, 0, 1], [0, 1, 1], [0, 1, 1]]  # 10 lost at t = 1, 11 new there; 12 comes in from afar at t = 2
    counts = tracking_errors.switch_causes([_seq(gt, pred, ids, present)])
    assert _only(counts) == {("not detected at t − 1", "not detected"): 1, ("elsewhere at t − 1", "elsewhere"): 1}


def test_a_digit_out_of_view_keeps_its_last_object_for_the_switch_count():
    # TrackEval counts a switch against the last object a digit was matched to, across frames where it is unseen.
    gt = [[A]] * 3
    pred = [[A, FAR], [FAR, A], [FAR, A]]
    present = [[1, 0], [1, 0], [1, 1]]
    seq = _seq(gt, pred, [[10, 11]] * 3, present, gt_present=[[1], [0], [1]])
    counts = tracking_errors.switch_causes([seq])
    assert sum(counts.values()) == 1 == tracking_metrics.evaluate_tracking([seq])["IDSW"]


def test_a_frame_without_objects_does_not_break_the_preference_for_the_last_pair():
    # TrackEval keeps the last matched frame's pairs through a frame where nothing is detected, so object 10, a
    # worse fit than object 11 at t = 2 (IoU 0.6 against 1), keeps the digit: no switch.
    gt = [[A]] * 3
    pred = [[A, FAR], [A, FAR], [[0, 0, 10, 6], A]]
    seq = _seq(gt, pred, [[10, 11]] * 3, [[1, 1], [0, 0], [1, 1]])
    assert tracking_metrics.evaluate_tracking([seq])["IDSW"] == 0
    assert sum(tracking_errors.switch_causes([seq]).values()) == 0


@pytest.mark.parametrize("whole_pixels", [False, True])
def test_the_switches_sum_to_trackevals_idsw_on_random_tracks(whole_pixels):
    # Whole-pixel boxes, as the drawn boxes are, give ties and IoUs of exactly 0.5, where a matching of its own
    # could part from TrackEval's.
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(300 if whole_pixels else 60):
        num_frames, digits, slots = 8, 2, 3
        start = rng.uniform(0, 30, [digits, 2])
        velocity = rng.uniform(-4, 4, [digits, 2])
        corner = start[None] + np.arange(num_frames)[:, None, None] * velocity[None]  # [T, S, 2]
        gt = np.concatenate([corner, corner + 12], -1)  # [T, S, 4]
        gt_present = rng.uniform(size=[num_frames, digits]) > 0.1
        # Objects follow the digits with jitter, one more roams; ids get shuffled now and then.
        pred = np.concatenate([gt + rng.normal(0, 2.5, gt.shape), rng.uniform(0, 40, [num_frames, 1, 4])], 1)
        pred[..., 2:] = np.maximum(pred[..., 2:], pred[..., :2] + 1)
        if whole_pixels:
            gt, pred = np.round(gt / 2) * 2, np.round(pred / 2) * 2
        ids = np.tile(np.arange(slots), [num_frames, 1])
        for t in range(1, num_frames):
            ids[t] = ids[t - 1][rng.permutation(slots)] if rng.uniform() < 0.3 else ids[t - 1]
        present = rng.uniform(size=[num_frames, slots]) > 0.15
        sequences.append(_seq(gt, pred, ids, present, gt_present=gt_present))
    counts = tracking_errors.switch_causes(sequences)
    idsw = tracking_metrics.evaluate_tracking(sequences)["IDSW"]
    assert idsw > 20  # the case is not trivial
    assert sum(counts.values()) == idsw


def test_ink_counts_the_strong_pixels_inside_each_box():
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=[2, 3, 12, 12, 1])  # [B, T, H, W, C]
    boxes = rng.integers(0, 13, [2, 3, 2, 4])
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2])  # some empty, some reaching the canvas' edge
    boxes[0, 0, 0] = [0, 0, 12, 12]
    ink = tracking_errors.ink_counts(frames, boxes)
    assert ink.shape == (2, 3, 2)
    for b, t, j in np.ndindex(*ink.shape):
        y0, x0, y1, x1 = boxes[b, t, j]
        assert ink[b, t, j] == np.sum(frames[b, t, y0:y1, x0:x1, 0] >= 0.5), (b, t, j)
    assert ink[0, 0, 0] == np.sum(frames[0, 0] >= 0.5)
    np.testing.assert_array_equal(tracking_errors.ink_counts(frames[..., 0], boxes), ink)  # without the channel


def test_failures_are_binned_by_the_digits_ink():
    # Frame 0: digit A (3 strong pixels) found, digit B (50) missed; frame 1: A mislocalised, B found.
    seq = _seq([[A, B_APART]] * 2, [[A, EMPTY], [NEAR_A, B_APART]], [[10, 11]] * 2, [[1, 0], [1, 1]])
    seq["gt_ink"] = np.array([[3, 50], [3, 50]])
    c = tracking_errors.classify([seq], 50)
    bin_of = {n: int(np.searchsorted(tracking_errors.INK_BINS, n, side="right")) - 1 for n in (3, 50)}
    assert c["gt_by_ink"][bin_of[3]] == 2 and c["gt_by_ink"][bin_of[50]] == 2
    assert c["loc_by_ink"][bin_of[3]] == 1 and sum(c["loc_by_ink"]) == 1
    assert c["unmatched_by_ink"][bin_of[50]] == 1 and sum(c["unmatched_by_ink"]) == 1
    assert sum(c["gt_by_ink"]) == c["gt"] == 4


def _case(counts):
    """The non-zero cells of `two_digit_failures`' cases."""
    return {key: n for key, n in counts["cases"].items() if n}


def test_two_digit_failures_sorts_each_failed_digit_by_what_the_objects_do():
    over_both = [0, 0, 10, 15]  # the union of A and B_CROSSING: IoU 100 / 150 with each
    seq = _seq([[A, B_APART, EMPTY], [A, B_CROSSING, EMPTY], [A, B_APART, EMPTY], [A, EMPTY, EMPTY],
                [A, B_APART, FAR]],
               [[A, NEAR_A], [over_both, EMPTY], [A, FAR], [FAR, EMPTY], [EMPTY, EMPTY]],
               [[10, 11]] * 5, [[1, 1], [1, 0], [1, 1], [1, 0], [0, 0]],
               gt_present=[[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    # Frame 0: both objects on A, so B (apart) is left over with the count right. Frame 1: one object over two
    # crossing digits. Frame 2: B has no object and no other explanation. Frame 3: the one digit's object is
    # elsewhere. Frame 4: three digits, left out.
    counts = tracking_errors.two_digit_failures([seq])
    assert counts["one"] == [1, 1] and counts["two"] == [3, 6]
    assert _case(counts) == {("both objects on the other digit", "apart"): 1,
                             ("fewer objects than digits, one over both", "overlapping"): 1,
                             ("other", "apart"): 1}
    seq["gt_ink"] = np.full([5, 3], 50)
    seq["gt_ink"][2, 1] = 9  # B of frame 2 is faint
    assert _case(tracking_errors.two_digit_failures([seq]))[("faint digit (< 10 px ≥ 0.5)", "apart")] == 1
