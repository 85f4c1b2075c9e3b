"""Tests for evaluation/tracking_metrics.py: TrackEval HOTA / CLEAR / Identity on hand-built tracks with known answers."""
import warnings

import numpy as np
import pytest

from evaluation import tracking_metrics

BOX_A = [0, 0, 10, 10]  # (y_min, x_min, y_max, x_max), 10 x 10 px
BOX_B = [20, 20, 30, 30]  # disjoint from BOX_A
BOX_FAR = [40, 40, 50, 50]  # disjoint from both
EMPTY = [0, 0, 0, 0]


def _seq(gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, pred_present):
    return {"gt_boxes": np.asarray(gt_boxes, np.float32), "gt_ids": np.asarray(gt_ids, np.int32),
            "gt_present": np.asarray(gt_present), "pred_boxes": np.asarray(pred_boxes, np.float32),
            "pred_ids": np.asarray(pred_ids, np.int32), "pred_present": np.asarray(pred_present)}


def _two_objects_gt(num_frames=4):
    gt_boxes = [[BOX_A, BOX_B]] * num_frames  # [T, 2, 4]
    gt_ids = [[7, 3]] * num_frames  # arbitrary, non-contiguous ids
    gt_present = np.ones([num_frames, 2], bool)
    return gt_boxes, gt_ids, gt_present


def _perfect():
    gt_boxes, gt_ids, gt_present = _two_objects_gt()
    # Predicted slots in the opposite order with other ids: order and id values must not matter.
    pred_boxes = [[BOX_B, BOX_A]] * 4
    pred_ids = [[11, 10]] * 4
    return _seq(gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, np.ones([4, 2]))


def _switch():
    """Predicted id 10 follows A and 11 follows B in frames 0-1; from frame 2 on they swap."""
    gt_boxes, gt_ids, gt_present = _two_objects_gt()
    pred_boxes = [[BOX_A, BOX_B]] * 4
    pred_ids = [[10, 11], [10, 11], [11, 10], [11, 10]]
    return _seq(gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, np.ones([4, 2]))


def _misses_and_fp():
    """Id 10 tracks A in all 4 frames; id 11 tracks B in frames 0-1 only; id 12 is a stray box in frame 3."""
    gt_boxes, gt_ids, gt_present = _two_objects_gt()
    pred_boxes = [[BOX_A, BOX_B, EMPTY]] * 3 + [[BOX_A, BOX_B, BOX_FAR]]
    pred_ids = [[10, 11, -1], [10, 11, -1], [10, 11, -1], [10, 11, 12]]
    pred_present = [[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 1]]
    return _seq(gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, pred_present)


def _shifted():
    """One 6 x 6 object for 2 frames, predicted 3 px to the right: IoU = (6·3) / (36 + 36 − 18) = 18/54 = 1/3."""
    gt_boxes = [[[0, 0, 6, 6]]] * 2
    pred_boxes = [[[0, 3, 6, 9]]] * 2
    return _seq(gt_boxes, [[5]] * 2, np.ones([2, 1]), pred_boxes, [[0]] * 2, np.ones([2, 1]))


def _empty(num_frames=3):
    return _seq(np.zeros([num_frames, 2, 4]), np.tile([0, 1], [num_frames, 1]), np.zeros([num_frames, 2]),
                np.zeros([num_frames, 3, 4]), -np.ones([num_frames, 3]), np.zeros([num_frames, 3]))


def _evaluate(sequences, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy-2 deprecations or 0/0 inside TrackEval would fail the test.
        return tracking_metrics.evaluate_tracking(sequences, **kwargs)


def test_sequence_data_format():
    seq = _misses_and_fp()
    data = tracking_metrics.sequence_data(*(seq[k] for k in tracking_metrics.SEQUENCE_KEYS))
    assert data["num_timesteps"] == 4
    assert data["num_gt_ids"] == 2 and data["num_tracker_ids"] == 3
    assert data["num_gt_dets"] == 8 and data["num_tracker_dets"] == 7
    # GT ids 7, 3 → 1, 0 (sorted); predicted 10, 11, 12 → 0, 1, 2; only present slots listed, in slot order.
    np.testing.assert_array_equal(data["gt_ids"][0], [1, 0])
    np.testing.assert_array_equal(data["tracker_ids"][0], [0, 1])
    np.testing.assert_array_equal(data["tracker_ids"][2], [0])
    np.testing.assert_array_equal(data["tracker_ids"][3], [0, 2])
    # The same ids on the slots, -1 where a slot does not count.
    np.testing.assert_array_equal(data["gt_slot_ids"], [[1, 0]] * 4)
    np.testing.assert_array_equal(data["tracker_slot_ids"], [[0, 1, -1]] * 2 + [[0, -1, -1], [0, -1, 2]])
    np.testing.assert_allclose(data["similarity_scores"][0], [[1, 0], [0, 1]])
    np.testing.assert_allclose(data["similarity_scores"][3], [[1, 0], [0, 0]])
    shifted = _shifted()
    data = tracking_metrics.sequence_data(*(shifted[k] for k in tracking_metrics.SEQUENCE_KEYS))
    np.testing.assert_allclose(data["similarity_scores"][0], [[1 / 3]])


def test_perfect_tracking():
    res = _evaluate([_perfect()])
    # 8 GT dets, all matched with IoU 1 and constant ids.
    assert res["MOTA"] == pytest.approx(1.0)
    assert res["MOTP"] == pytest.approx(1.0)
    assert res["IDF1"] == pytest.approx(1.0)
    assert res["HOTA"] == pytest.approx(1.0)
    assert res["HOTA@0.5"] == pytest.approx(1.0)
    assert res["DetA"] == pytest.approx(1.0) and res["AssA"] == pytest.approx(1.0)
    assert (res["IDSW"], res["TP"], res["FP"], res["FN"]) == (0, 8, 0, 0)
    assert (res["num_gt_dets"], res["num_pred_dets"], res["num_sequences"]) == (8, 8, 1)
    assert res["iou_threshold"] == 0.5
    for key in ("IDSW", "TP", "FP", "FN", "num_gt_dets", "num_pred_dets", "num_sequences"):
        assert type(res[key]) is int, key
    for key in ("HOTA", "HOTA@0.5", "DetA", "AssA", "MOTA", "MOTP", "IDF1"):
        assert type(res[key]) is float, key


def test_identity_switch():
    res = _evaluate([_switch()])
    # CLEAR: all 8 dets matched (boxes exact). In frame 2 both GT objects get a different id than before → IDSW = 2.
    # MOTA = 1 − (FN + FP + IDSW) / num_gt_dets = 1 − 2/8 = 0.75.
    assert (res["TP"], res["FP"], res["FN"], res["IDSW"]) == (8, 0, 0, 2)
    assert res["MOTA"] == pytest.approx(0.75)
    assert res["MOTP"] == pytest.approx(1.0)
    # Identity: each GT track shares 2 frames with each predicted track; best one-to-one assignment (A↔10, B↔11)
    # gives IDTP = 2 + 2 = 4, IDFN = 8 − 4 = 4, IDFP = 8 − 4 = 4 → IDF1 = 4 / (4 + 2 + 2) = 0.5.
    assert (res["IDTP"], res["IDFP"], res["IDFN"]) == (4, 4, 4)
    assert res["IDF1"] == pytest.approx(0.5)
    # HOTA: every det matched at every alpha → DetA = 1. Each TP's track pair (gt, pred) has TPA = 2, FNA = 4 − 2 = 2,
    # FPA = 4 − 2 = 2 → A(c) = 2/6 = 1/3 for all 8 TPs → AssA = 1/3, HOTA = sqrt(1 · 1/3) at every alpha.
    assert res["DetA"] == pytest.approx(1.0)
    assert res["AssA"] == pytest.approx(1 / 3)
    assert res["HOTA"] == pytest.approx(np.sqrt(1 / 3))
    assert res["HOTA@0.5"] == pytest.approx(np.sqrt(1 / 3))


def test_missed_detections_and_false_positive():
    res = _evaluate([_misses_and_fp()])
    # CLEAR: A matched in 4 frames, B in 2 → TP = 6, FN = 2; the stray box → FP = 1; no switches.
    # MOTA = 1 − (2 + 1 + 0)/8 = 5/8.
    assert (res["TP"], res["FP"], res["FN"], res["IDSW"]) == (6, 1, 2, 0)
    assert res["MOTA"] == pytest.approx(5 / 8)
    assert (res["num_gt_dets"], res["num_pred_dets"]) == (8, 7)
    # B tracked in 2/4 = 50 % of its frames → partially tracked; A → mostly tracked.
    assert (res["MT"], res["PT"], res["ML"]) == (1, 1, 0)
    # Identity: A↔10 (4 frames), B↔11 (2) → IDTP = 6, IDFN = 2, IDFP = 1 (id 12) → IDF1 = 6 / (6 + 1.5) = 0.8.
    assert res["IDF1"] == pytest.approx(0.8)
    # HOTA: DetA = 6 / (6 + 2 + 1) = 2/3. AssA: A↔10 → 4 / (4 + 4 − 4) = 1 on 4 TPs; B↔11 → 2 / (4 + 2 − 2) = 1/2 on
    # 2 TPs → AssA = (4 · 1 + 2 · 1/2) / 6 = 5/6; HOTA = sqrt(2/3 · 5/6) = sqrt(5/9).
    assert res["DetA"] == pytest.approx(2 / 3)
    assert res["AssA"] == pytest.approx(5 / 6)
    assert res["HOTA"] == pytest.approx(np.sqrt(5 / 9))


def test_iou_threshold():
    # IoU 1/3 < 0.5: CLEAR/Identity see 2 misses and 2 false positives; MOTA = 1 − (2 + 2)/2 = −1, IDF1 = 0.
    res = _evaluate([_shifted()], iou_threshold=0.5)
    assert (res["TP"], res["FP"], res["FN"]) == (0, 2, 2)
    assert res["MOTA"] == pytest.approx(-1.0)
    assert res["IDF1"] == pytest.approx(0.0)
    # HOTA ignores iou_threshold: matched (HOTA_alpha = 1) for the 6 alphas 0.05..0.30 ≤ 1/3, else 0 → HOTA = 6/19.
    assert res["HOTA"] == pytest.approx(6 / 19)
    assert res["HOTA@0.5"] == pytest.approx(0.0)
    # At 0.3 the pair matches: MOTA = 1, MOTP = mean IoU = 1/3, IDF1 = 1.
    res = _evaluate([_shifted()], iou_threshold=0.3)
    assert (res["TP"], res["FP"], res["FN"], res["IDSW"]) == (2, 0, 0, 0)
    assert res["MOTA"] == pytest.approx(1.0)
    assert res["MOTP"] == pytest.approx(1 / 3)
    assert res["IDF1"] == pytest.approx(1.0)
    assert res["HOTA"] == pytest.approx(6 / 19)
    assert res["iou_threshold"] == 0.3


def test_empty_sequences():
    res = _evaluate([_empty()])
    assert (res["TP"], res["FP"], res["FN"], res["IDSW"], res["num_gt_dets"], res["num_pred_dets"]) == (0,) * 6
    assert np.isfinite([res[k] for k in ("HOTA", "MOTA", "MOTP", "IDF1")]).all()
    res = _evaluate([_empty(num_frames=0)])
    assert res["num_sequences"] == 1 and res["num_gt_dets"] == 0
    # An empty sequence adds no counts, so combining it with a normal one changes nothing but num_sequences.
    alone = _evaluate([_misses_and_fp()])
    combined = _evaluate([_empty(), _misses_and_fp(), _empty(num_frames=1)])
    assert combined["num_sequences"] == 3
    for key, value in alone.items():
        if key != "num_sequences":
            assert combined[key] == pytest.approx(value), key
    with pytest.raises(ValueError):
        tracking_metrics.evaluate_tracking([])


def test_combine_two_sequences():
    res = _evaluate([_switch(), _misses_and_fp()])
    # CLEAR counts add: TP = 8 + 6, FP = 0 + 1, FN = 0 + 2, IDSW = 2 + 0 → MOTA = 1 − (1 + 2 + 2)/16 = 11/16.
    assert (res["TP"], res["FP"], res["FN"], res["IDSW"]) == (14, 1, 2, 2)
    assert res["MOTA"] == pytest.approx(11 / 16)
    # Identity: IDTP = 4 + 6, IDFP = 4 + 1, IDFN = 4 + 2 → IDF1 = 10 / (10 + 2.5 + 3) = 10/15.5.
    assert res["IDF1"] == pytest.approx(10 / 15.5)
    # HOTA: DetA = 14 / (14 + 2 + 1); AssA = TP-weighted (8 · 1/3 + 6 · 5/6) / 14 = 23/42.
    assert res["DetA"] == pytest.approx(14 / 17)
    assert res["AssA"] == pytest.approx(23 / 42)
    assert res["HOTA"] == pytest.approx(np.sqrt(14 / 17 * 23 / 42))


def test_id_layouts_and_ignored_slots():
    per_frame = _misses_and_fp()
    fixed = dict(per_frame, gt_ids=np.array([7, 3]))  # [S] instead of [T, S]
    expected = _evaluate([per_frame])
    assert _evaluate([fixed]) == expected
    # Extra slots that must be ignored: id −1 but present (on top of A), present 0 with a valid id (on top of B),
    # and a far box with id −1 and present 0. Added in front so slot positions shift too.
    extra_boxes = np.array([[BOX_A, BOX_B, BOX_FAR]] * 4, np.float32)  # [T, 3, 4]
    noisy = dict(per_frame,
                 pred_boxes=np.concatenate([extra_boxes, per_frame["pred_boxes"]], axis=1),  # [T, 6, 4]
                 pred_ids=np.concatenate([np.array([[-1, 99, -1]] * 4), per_frame["pred_ids"]], axis=1),
                 pred_present=np.concatenate([np.array([[True, False, False]] * 4),
                                              per_frame["pred_present"].astype(bool)], axis=1))
    assert _evaluate([noisy]) == expected
    # GT objects count only where visible: hiding B in frames 2-3 removes exactly its 2 misses.
    hidden = dict(per_frame, gt_present=np.array([[1, 1], [1, 1], [1, 0], [1, 0]]))
    res = _evaluate([hidden])
    assert (res["TP"], res["FP"], res["FN"], res["num_gt_dets"]) == (6, 1, 0, 6)


def test_duplicate_ids_in_a_frame_raise():
    seq = dict(_perfect(), pred_ids=np.array([[10, 10]] * 4))
    with pytest.raises(ValueError, match="duplicate"):
        tracking_metrics.evaluate_tracking([seq])


def test_matched_ious_pair_each_object_with_its_best_box_and_summarise():
    gt = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], np.float64)  # [T=1, S=2, 4]
    pred = np.array([[[20, 20, 30, 30], [0, 0, 10, 5], [40, 40, 45, 45]]], np.float64)  # [T=1, N=3, 4]
    seq = {"gt_boxes": gt, "gt_ids": [0, 1], "gt_present": [[1, 1]], "pred_boxes": pred,
           "pred_glimpse_boxes": pred + 2.0, "pred_ids": [[3, 4, 5]], "pred_present": [[1, 1, 1]]}
    ious = tracking_metrics.matched_ious([seq])
    np.testing.assert_allclose(np.sort(ious), [0.5, 1.0])  # The far box overlaps nothing and is not a pair.
    shifted = tracking_metrics.matched_ious([seq], "pred_glimpse_boxes")
    # Shifted by 2 px: [0,0,10,10] vs [2,2,12,7] meet in 8×5 = 40 of 100 + 50 − 40; [20,20,30,30] vs
    # [22,22,32,32] in 8×8 = 64 of 100 + 100 − 64.
    np.testing.assert_allclose(np.sort(shifted), [40 / 110, 64 / 136])
    summary = tracking_metrics.iou_summary(ious)
    assert summary["num_pairs"] == 2 and summary["at_least_0.5"] == 1.0 and summary["q50"] == 0.75
    assert tracking_metrics.iou_summary([]) == {"num_pairs": 0}


def test_detection_count_accuracy_counts_frames_whose_counts_agree():
    gt_boxes, gt_ids, gt_present = _two_objects_gt(num_frames=4)
    gt_present[3, 1] = False  # Frame 3 shows one digit.
    pred_boxes = [[BOX_A, BOX_B, BOX_FAR]] * 4
    pred_ids = [[0, 1, 2], [0, 1, 2], [0, -1, 2], [0, 1, 2]]
    pred_present = [[1, 1, 0],  # frame 0: 2 = 2
                    [1, 1, 1],  # frame 1: 3 ≠ 2 (a false object)
                    [1, 1, 0],  # frame 2: the slot without an id does not count: 1 ≠ 2
                    [1, 0, 0]]  # frame 3: 1 = 1
    seq = _seq(gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, pred_present)
    assert tracking_metrics.detection_count_accuracy([seq]) == 0.5
    assert tracking_metrics.detection_count_accuracy([seq, seq]) == 0.5
    assert np.isnan(tracking_metrics.detection_count_accuracy([]))

