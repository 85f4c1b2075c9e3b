"""Multi-object-tracking metrics of inferred tracks against ground-truth tracks, computed by TrackEval.

The numbers come from TrackEval's own metric classes (`trackeval.metrics.HOTA`, `.CLEAR`, `.Identity`; the
MOTChallenge evaluator, https://github.com/JonathonLuiten/TrackEval). This module only builds the per-sequence input
those classes take (contiguous ids, per-frame IoU matrices, from TrackEval's own box-IoU helper) and turns their output
into plain Python numbers. Nothing is re-implemented by hand.

Matching rule:
  * inferred objects: a slot counts in a frame only where it is present (z_pres = 1, i.e. `pred_present`) and has an
    object id >= 0; its track is its object id;
  * ground-truth objects: a digit counts in a frame only where it is visible (`gt_present`); its track is its id;
  * similarity is the IoU of the (y_min, x_min, y_max, x_max) pixel boxes (max exclusive, so width = x_max - x_min);
  * CLEAR and Identity match a pair only if IoU >= `iou_threshold` (default 0.5); HOTA evaluates every localisation
    threshold alpha in 0.05, 0.10, ..., 0.95 (fixed by TrackEval) and averages.

Metrics (all in [0, 1] unless marked as counts; higher is better except the counts FP, FN, IDSW):
  * HOTA: Higher Order Tracking Accuracy, sqrt(DetA · AssA), averaged over the 19 alphas.
  * HOTA@0.5: HOTA at the single alpha = 0.5.
  * DetA: detection accuracy, TP / (TP + FN + FP) of the per-frame matching, averaged over alphas.
  * AssA: association accuracy, the mean over TP matches of TPA / (TPA + FNA + FPA) of the matched track pair.
  * LocA: mean IoU of the HOTA matches, averaged over alphas.
  * MOTA: CLEAR MOT accuracy, 1 - (FN + FP + IDSW) / num_gt_dets (can be negative).
  * MOTP: CLEAR MOT precision, the mean IoU of the CLEAR matches (TrackEval's similarity form: 1 = perfect).
  * MODA: MOTA without the IDSW term.
  * IDF1: identity F1, IDTP / (IDTP + 0.5 IDFP + 0.5 IDFN) under the best one-to-one track-to-track assignment.
  * IDSW (count): identity switches, a GT object matched to a different inferred id than at its last match.
  * TP, FP, FN (counts): CLEAR matches, unmatched inferred objects, unmatched GT objects (summed over frames).
  * MT, PT, ML (counts): GT tracks matched in > 80 %, 20-80 %, < 20 % of their frames; Frag: track fragmentations.

Sequences are combined with each metric class's `combine_sequences` (counts summed over sequences, so every metric
is detection-weighted). A sequence with no GT and no inferred objects adds nothing (all its counts are zero); if the
whole evaluation has no detections, TrackEval's ratios come out as 0.

TrackEval 1.3.0 on NumPy 2: the code paths used here (`HOTA`, `CLEAR`, `Identity`, `_BaseDataset._calculate_box_ious`)
use no removed NumPy aliases (np.float / np.int / np.bool / np.asfarray) and run warning-free on NumPy 2. Two
TrackEval behaviours are guarded against here rather than patched: its metrics index arrays by id, so ids are
remapped to 0..n-1 per sequence over the ids that are actually present (an id that never appears would otherwise
give a 0/0 in HOTA's global alignment score); and duplicate ids within one frame (which its fancy-indexed `+=`
would silently undercount) raise a ValueError. Its console output (config printing, optional timing) is switched
off / swallowed.
"""

import contextlib
import io

import numpy as np
from trackeval.datasets._base_dataset import _BaseDataset
from trackeval.metrics import CLEAR, HOTA, Identity

SEQUENCE_KEYS = ("gt_boxes", "gt_ids", "gt_present", "pred_boxes", "pred_ids", "pred_present")


def box_ious(gt_boxes, pred_boxes):
    """IoU matrix [G, P] of (y_min, x_min, y_max, x_max) boxes [G, 4] and [P, 4], by TrackEval's helper.

    Both sets are reordered to TrackEval's 'x0y0x1y1' layout; with max exclusive, x1 - x0 is the width in pixels.
    """
    gt_xyxy = np.asarray(gt_boxes, np.float64)[:, [1, 0, 3, 2]]  # [G, 4]
    pred_xyxy = np.asarray(pred_boxes, np.float64)[:, [1, 0, 3, 2]]  # [P, 4]
    return _BaseDataset._calculate_box_ious(gt_xyxy, pred_xyxy, box_format="x0y0x1y1")


def _per_frame(ids, num_timesteps, name):
    """Ids [T, K] from ids given as [T, K] or fixed per sequence as [K]."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = np.broadcast_to(ids[np.newaxis, :], (num_timesteps, ids.shape[0]))
    if ids.ndim != 2 or ids.shape[0] != num_timesteps:
        raise ValueError(f"{name} must be [T, K] or [K], got shape {ids.shape} with T = {num_timesteps}")
    return ids.astype(np.int64)


def _contiguous(ids, valid, name):
    """Remaps ids [T, K] at valid [T, K] to 0..n-1 (sorted by original id); returns (new ids [T, K], n)."""
    for t in range(ids.shape[0]):
        frame_ids = ids[t][valid[t]]
        if len(np.unique(frame_ids)) != len(frame_ids):
            raise ValueError(f"{name}: duplicate ids {frame_ids.tolist()} in frame {t}")
    unique_ids = np.unique(ids[valid])  # [n]
    new_ids = np.full(ids.shape, -1, np.int64)  # [T, K]
    new_ids[valid] = np.searchsorted(unique_ids, ids[valid])
    return new_ids, len(unique_ids)


def _counted(gt_present, pred_ids, pred_present):
    """Which slots count (bool [T, S], [T, N]): visible GT objects; predictions present with an id >= 0."""
    return np.asarray(gt_present).astype(bool), np.asarray(pred_present).astype(bool) & (np.asarray(pred_ids) >= 0)


def sequence_data(gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, pred_present):
    """One sequence in the dict format trackeval's metrics' eval_sequence() take.

    Keys: num_timesteps, num_gt_ids, num_tracker_ids, num_gt_dets, num_tracker_dets, gt_ids, tracker_ids,
    similarity_scores; with IoU similarities (TrackEval's `_calculate_box_ious`) and ids remapped to 0..n-1.

    Args:
      gt_boxes: [T, S, 4] (y_min, x_min, y_max, x_max) in pixels, max exclusive.
      gt_ids: int [T, S] or [S] (fixed per sequence).
      gt_present: [T, S] 0/1 or bool, whether the GT object is visible in the frame.
      pred_boxes: [T, N, 4], same box format.
      pred_ids: int [T, N] (or [N]), -1 for empty slots.
      pred_present: [T, N] 0/1 or bool (z_pres). A slot counts only where present and id >= 0.

    Returns:
      dict: gt_ids / tracker_ids are lists of T int arrays (the contiguous ids in that frame, in slot order) and
      similarity_scores a list of T float arrays [num_gt_t, num_tracker_t]; and, for callers that look back at
      the slots (TrackEval ignores them), gt_slot_ids [T, S] / tracker_slot_ids [T, N]: each slot's contiguous
      id, -1 where it does not count.
    """
    gt_boxes = np.asarray(gt_boxes, np.float64)  # [T, S, 4]
    pred_boxes = np.asarray(pred_boxes, np.float64)  # [T, N, 4]
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4 or pred_boxes.ndim != 3 or pred_boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [T, K, 4], got {gt_boxes.shape} and {pred_boxes.shape}")
    num_timesteps = gt_boxes.shape[0]
    if pred_boxes.shape[0] != num_timesteps:
        raise ValueError(f"GT has {num_timesteps} frames, predictions {pred_boxes.shape[0]}")
    gt_ids = _per_frame(gt_ids, num_timesteps, "gt_ids")  # [T, S]
    pred_ids = _per_frame(pred_ids, num_timesteps, "pred_ids")  # [T, N]
    gt_valid, pred_valid = _counted(gt_present, pred_ids, pred_present)  # [T, S], [T, N]
    if gt_valid.shape != gt_boxes.shape[:2] or gt_ids.shape != gt_boxes.shape[:2]:
        raise ValueError(f"gt shapes disagree: boxes {gt_boxes.shape}, ids {gt_ids.shape}, present {gt_valid.shape}")
    if pred_valid.shape != pred_boxes.shape[:2] or pred_ids.shape != pred_boxes.shape[:2]:
        raise ValueError(f"pred shapes disagree: boxes {pred_boxes.shape}, ids {pred_ids.shape}, "
                         f"present {pred_valid.shape}")

    gt_new, num_gt_ids = _contiguous(gt_ids, gt_valid, "gt_ids")  # [T, S]
    pred_new, num_pred_ids = _contiguous(pred_ids, pred_valid, "pred_ids")  # [T, N]

    data = {"num_timesteps": int(num_timesteps), "num_gt_ids": int(num_gt_ids),
            "num_tracker_ids": int(num_pred_ids), "num_gt_dets": int(gt_valid.sum()),
            "num_tracker_dets": int(pred_valid.sum()), "gt_ids": [], "tracker_ids": [], "similarity_scores": [],
            "gt_slot_ids": gt_new, "tracker_slot_ids": pred_new}
    for t in range(num_timesteps):
        data["gt_ids"].append(gt_new[t][gt_valid[t]])  # [G_t]
        data["tracker_ids"].append(pred_new[t][pred_valid[t]])  # [P_t]
        data["similarity_scores"].append(box_ious(gt_boxes[t][gt_valid[t]], pred_boxes[t][pred_valid[t]]))
    return data


def _metric_classes(iou_threshold):
    config = {"THRESHOLD": float(iou_threshold), "PRINT_CONFIG": False}
    return HOTA(), CLEAR(dict(config)), Identity(dict(config))


def evaluate_tracking(sequences, iou_threshold=0.5):
    """Tracking metrics over sequences, by TrackEval's HOTA, CLEAR and Identity (see the module docstring).

    Args:
      sequences: iterable of dicts with keys gt_boxes, gt_ids, gt_present, pred_boxes, pred_ids, pred_present
        (the arguments of `sequence_data`).
      iou_threshold: IoU needed for a CLEAR / Identity match (HOTA uses its fixed alphas).

    Returns:
      dict of Python floats / ints: HOTA, HOTA@0.5, DetA, AssA, LocA, DetRe, DetPr, AssRe, AssPr (averaged over
      alphas except HOTA@0.5); MOTA, MOTP, MODA, TP, FP, FN, IDSW, MT, PT, ML, Frag (CLEAR); IDF1, IDP, IDR, IDTP,
      IDFP, IDFN (Identity); num_gt_dets, num_pred_dets, num_sequences, iou_threshold.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    hota, clear, identity = _metric_classes(iou_threshold)
    hota_res, clear_res, id_res = {}, {}, {}
    num_gt_dets = num_pred_dets = 0
    with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints when its global timing flag is on.
        for i, seq in enumerate(sequences):
            missing = [k for k in SEQUENCE_KEYS if k not in seq]
            if missing:
                raise KeyError(f"sequence {i} lacks {missing}")
            data = sequence_data(*(seq[k] for k in SEQUENCE_KEYS))
            num_gt_dets += data["num_gt_dets"]
            num_pred_dets += data["num_tracker_dets"]
            hota_res[i] = hota.eval_sequence(data)
            clear_res[i] = clear.eval_sequence(data)
            id_res[i] = identity.eval_sequence(data)
        if not hota_res:
            raise ValueError("evaluate_tracking needs at least one sequence")
        h = hota.combine_sequences(hota_res)
        c = clear.combine_sequences(clear_res)
        d = identity.combine_sequences(id_res)

    alpha_half = int(np.argmin(np.abs(hota.array_labels - 0.5)))
    out = {"HOTA": float(np.mean(h["HOTA"])), "HOTA@0.5": float(h["HOTA"][alpha_half])}
    for field in ("DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr"):
        out[field] = float(np.mean(h[field]))
    for field in ("MOTA", "MOTP", "MODA"):
        out[field] = float(c[field])
    out.update(TP=int(c["CLR_TP"]), FP=int(c["CLR_FP"]), FN=int(c["CLR_FN"]), IDSW=int(c["IDSW"]),
               MT=int(c["MT"]), PT=int(c["PT"]), ML=int(c["ML"]), Frag=int(c["Frag"]))
    for field in ("IDF1", "IDP", "IDR"):
        out[field] = float(d[field])
    out.update(IDTP=int(d["IDTP"]), IDFP=int(d["IDFP"]), IDFN=int(d["IDFN"]))
    out.update(num_gt_dets=int(num_gt_dets), num_pred_dets=int(num_pred_dets), num_sequences=len(hota_res),
               iou_threshold=float(iou_threshold))
    return out


def matched_ious(sequences, box_key="pred_boxes"):
    """IoUs of the predicted boxes matched one-to-one to ground-truth boxes, frame by frame.

    Each frame's present predictions and visible ground-truth objects are matched by the assignment that maximises
    the total IoU (Hungarian, `scipy.optimize.linear_sum_assignment`, as CLEAR's matching does before its
    threshold); pairs with IoU > 0 are kept. Their distribution shows how well the boxes fit the objects,
    independently of the IoU threshold of MOTA / IDF1.

    Args:
      sequences: dicts as for `evaluate_tracking`; `box_key` names the predicted boxes to score (e.g. the drawn
        boxes `pred_boxes` or the glimpse footprints under another key).

    Returns:
      float64 [M] IoUs of the M matched pairs.
    """
    from scipy.optimize import linear_sum_assignment

    ious = []
    for seq in sequences:
        gt_boxes, pred_boxes = np.asarray(seq["gt_boxes"], np.float64), np.asarray(seq[box_key], np.float64)
        gt_valid, pred_valid = _counted(seq["gt_present"], seq["pred_ids"], seq["pred_present"])  # [T, S], [T, N]
        for t in range(gt_boxes.shape[0]):
            iou = box_ious(gt_boxes[t][gt_valid[t]], pred_boxes[t][pred_valid[t]])  # [G_t, P_t]
            if iou.size:
                rows, cols = linear_sum_assignment(-iou)
                ious.extend(v for v in iou[rows, cols] if v > 0)
    return np.asarray(ious, np.float64)


def detection_count_accuracy(sequences):
    """The fraction of frames whose number of counted predictions equals their number of visible ground-truth
    objects: per-frame visible-count accuracy under the detection rule of the metrics (a slot counts where it is
    present and has an id, `pred_present`; the data's digits where they are visible). With `pred_present` the
    objects that draw something (`evaluator.tracking_sequences`), an object the model keeps while its digit is out
    of view does not count, as the digit does not.

    Args:
      sequences: dicts as for `evaluate_tracking`.

    Returns:
      float in [0, 1] (NaN without frames).
    """
    right, frames = 0, 0
    for seq in sequences:
        gt_valid, pred_valid = _counted(seq["gt_present"], seq["pred_ids"], seq["pred_present"])  # [T, S], [T, N]
        right += int(np.sum(gt_valid.sum(axis=1) == pred_valid.sum(axis=1)))
        frames += gt_valid.shape[0]
    return right / frames if frames else float("nan")


def iou_summary(ious):
    """Quantiles, mean and the fraction at IoU ≥ 0.5 of matched-pair IoUs (`matched_ious`), as Python floats."""
    ious = np.asarray(ious, np.float64)
    if not ious.size:
        return {"num_pairs": 0}
    quantiles = np.quantile(ious, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"num_pairs": int(ious.size), "mean": float(ious.mean()), "at_least_0.5": float(np.mean(ious >= 0.5)),
            **{f"q{int(q * 100)}": float(v) for q, v in zip((0.1, 0.25, 0.5, 0.75, 0.9), quantiles)}}

