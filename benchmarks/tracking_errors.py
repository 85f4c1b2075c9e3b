"""Where MOTA is lost (issue 10): a checkpoint's tracking errors on held-out data, split by cause.

MOTA = 1 − (FN + FP + IDSW) / GT. This scores the highest-weight particle of K on the first `--num` test sequences
(T = 10) as `sqair-eval` does, then matches, per frame, the visible digits to the present objects by the Hungarian
method on IoU (any overlap) and sorts every ground-truth box into one of:

  * matched at IoU ≥ 0.5 (a CLEAR true positive, before identity);
  * localisation: matched to an object, but at IoU < 0.5 (costs one FN and one FP);
  * unmatched: no object left for it (a count or overlap error, one FN);
and every object without a digit into a pure FP. The localisation failures are then split by where the digit is:
touching the canvas edge (partly outside) or not, and by the number of digits visible in the frame; every digit's
localisation and no-object rates by where it is (inside, or at the edge while entering, leaving or moving along
it, `place_kind`); and the IoU
misses by their cause: box too large/small against the digit, or centre off by more than a quarter of its size;
whether a miss lags (its box overlaps the digit's place at t − 1 more than its place at t); and the failure rates
by frame, by the digit's speed, by the visible box's area (a digit leaving the canvas leaves a sliver) and by the
digit's visible ink (`ink_counts`: the ground truth counts a digit as soon as one pixel of it, however faint, is
on the canvas); and the
mean and median signed difference of each box side, predicted minus true, over all matched pairs (a systematic
shift or growth of the boxes would show there, and would cost IoU on every digit); and, for matched digits inside
and at the edge, the share of the digit's whole box that shows and how far the object's glimpse centre is from the
whole digit's centre (an object that cannot follow a digit out of the canvas stays at the edge); and the
identity switches by cause (`switch_causes`: a swap at a crossing, a second object on the digit, a lost object's
replacement); and, in frames with two digits, what the objects do where a digit fails (`two_digit_failures`: one
object over both, both objects on the other digit, ...). TrackEval's own MOTA, FP, FN and IDSW are printed
alongside.

Usage:
    python benchmarks/tracking_errors.py RUN [--checkpoint PREFIX] [--num 1000] [--k 5] [--data DATA]
        [--refine-steps N [--motion-weight λ]] [--figure PNG [--figure-place along]]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _area(b):
    """Area of a (y_min, x_min, y_max, x_max) box."""
    return (b[2] - b[0]) * (b[3] - b[1])


def _iou(a, b):
    """IoU of two (y_min, x_min, y_max, x_max) boxes, max exclusive: the metrics' own (`tracking_metrics.box_ious`)."""
    from evaluation import tracking_metrics

    return float(tracking_metrics.box_ious([a], [b])[0, 0])


def _at_edge(b, size):
    """Whether a visible box touches the edge of the size×size canvas (its digit is partly outside)."""
    return b[0] <= 0 or b[1] <= 0 or b[2] >= size or b[3] >= size


def _centre_error(glimpse_box, full_box, size):
    """Distance in px from a glimpse's sampled centre to the centre of a digit's whole (unclipped) box.

    `boxes_from_where` gives x_min = 0.5·(n − 1)·(t − s + 1) and a width of (n + 1)·s, so the centre pixel
    0.5·(n − 1)·(t + 1) is x_min + 0.5·(n − 1)·s; a box [a, b) of pixels has its centre at (a + b − 1) / 2.
    """
    centre = [glimpse_box[k] + 0.5 * (size - 1) * (glimpse_box[k + 2] - glimpse_box[k]) / (size + 1) for k in (0, 1)]
    digit = [(full_box[k] + full_box[k + 2] - 1) / 2 for k in (0, 1)]
    return float(((centre[0] - digit[0]) ** 2 + (centre[1] - digit[1]) ** 2) ** 0.5)


def place_kind(boxes, present, t, j, size):
    """Where digit j is at frame t: "inside" the canvas, or touching its edge at the first frame ("edge, t = 0"),
    "entering" (its visible box grew since t − 1 and does not shrink at t + 1), "leaving" (it shrinks or vanishes at
    t + 1; never at the last frame) or "along" it (neither: sliding along the edge, or turning back)."""
    g = boxes[t, j]
    if not _at_edge(g, size):
        return "inside"
    if t == 0:
        return "edge, t = 0"
    if t + 1 < boxes.shape[0] and (not present[t + 1, j] or _area(boxes[t + 1, j]) < _area(g)):
        return "leaving"
    before = _area(boxes[t - 1, j]) if present[t - 1, j] else 0
    return "entering" if before < _area(g) else "along"


PLACES = ("inside", "edge, t = 0", "entering", "leaving", "along")
SPEED_BINS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)  # Lower edges, pixels per frame, of the digit's centre displacement.
AREA_BINS = (0, 20, 50, 100, 200)  # Lower edges, pixels, of a visible digit's box (slivers at the edge are small).
INK_BINS = (0, 1, 5, 10, 20, 40)  # Lower edges of `ink_counts`: pixels ≥ INK_LEVEL in a visible digit's box.
INK_LEVEL = 0.5


def _bin(lower_edges, value):
    """Index of the bin of `value` among bins given by their ascending lower edges (the last one is open)."""
    import numpy as np

    return int(np.searchsorted(lower_edges, value, side="right")) - 1


def ink_counts(frames, boxes):
    """[..., T, S] pixels of at least INK_LEVEL inside each ground-truth box (0 for an empty box).

    Args:
      frames: [..., T, H, W] or [..., T, H, W, 1] intensities in [0, 1].
      boxes: [..., T, S, 4] (y_min, x_min, y_max, x_max), max exclusive, in pixels.

    A digit overlapping another also counts the other's ink inside its box: an upper bound on its own.
    """
    import numpy as np

    frames = np.asarray(frames)
    if frames.ndim == np.asarray(boxes).ndim + 1:  # a trailing channel axis
        frames = frames[..., 0]
    ink = np.cumsum(np.cumsum(frames >= INK_LEVEL, axis=-2), axis=-1)  # [..., T, H, W] summed-area table
    ink = np.pad(ink, [(0, 0)] * (ink.ndim - 2) + [(1, 0), (1, 0)])  # [..., T, H + 1, W + 1]
    boxes = np.asarray(boxes).astype(np.int64)
    y0, x0, y1, x1 = (boxes[..., k] for k in range(4))  # [..., T, S]
    at = lambda y, x: np.take_along_axis(  # noqa: E731
        ink.reshape(ink.shape[:-2] + (-1,)), y * ink.shape[-1] + x, axis=-1)
    return at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)


def match_frame(s, t):
    """Frame t of sequence `s` as `classify` and `two_digit_failures` match it: (ids, gt, pred_slots, pred, iou,
    pairs), the visible digits' slots and boxes, the present objects' slots and boxes, their IoU [G_t, P_t] and the
    Hungarian method's pairs on IoU (ground-truth row, object row) that overlap at all."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from evaluation import tracking_metrics

    ids = [j for j in range(s["gt_boxes"].shape[1]) if s["gt_present"][t, j]]
    gt = [s["gt_boxes"][t, j] for j in ids]
    pred_slots = [n for n in range(s["pred_boxes"].shape[1]) if s["pred_present"][t, n] > 0.5]
    pred = [s["pred_boxes"][t, n] for n in pred_slots]
    iou = tracking_metrics.box_ious(gt, pred) if gt and pred else np.zeros([len(gt), len(pred)])
    rows, cols = linear_sum_assignment(-iou)
    return ids, gt, pred_slots, pred, iou, [(r, q) for r, q in zip(rows, cols) if iou[r, q] > 0]


def classify(sequences, size):
    """Counts of each error kind over `sequences` (dicts of gt/pred boxes, presence) on a size×size canvas."""
    import numpy as np

    c = {key: 0 for key in ("gt", "tp", "loc", "unmatched", "pure_fp", "loc_edge", "edge", "loc_two", "two",
                            "loc_larger", "loc_smaller", "loc_offset", "loc_lagging", "loc_moved")}
    frames = sequences[0]["gt_boxes"].shape[0] if sequences else 0
    c["loc_by_frame"], c["gt_by_frame"] = [0] * frames, [0] * frames
    c["side_diffs"] = []  # (pred − gt) of (y_min, x_min, y_max, x_max) for every matched pair, in pixels
    # (at the edge, IoU ≥ 0.5, visible share of the digit's box, glimpse centre's distance to the whole digit's
    # centre in px) per matched pair, when the sequences carry the digits' unclipped boxes (`gt_full_boxes`).
    c["centre_errors"] = []
    c["loc_by_speed"], c["gt_by_speed"] = [0] * len(SPEED_BINS), [0] * len(SPEED_BINS)
    for key in ("gt", "loc", "unmatched"):
        c[f"{key}_by_area"] = [0] * len(AREA_BINS)
        c[f"{key}_by_ink"] = [0] * len(INK_BINS)  # when the sequences carry `gt_ink` (`ink_counts`)
        c[f"{key}_by_place"] = dict.fromkeys(PLACES, 0)
    for s in sequences:
        for t in range(frames):
            ids, gt, pred_slots, pred, iou, pairs = match_frame(s, t)  # iou [G_t, P_t]
            c["gt"] += len(gt)
            c["unmatched"] += len(gt) - len(pairs)
            pair_of = dict(pairs)  # ground-truth row → its object
            for r, g in enumerate(gt):
                area_bin = _bin(AREA_BINS, _area(g))
                place = place_kind(s["gt_boxes"], s["gt_present"], t, ids[r], size)
                ink_bin = _bin(INK_BINS, s["gt_ink"][t, ids[r]]) if "gt_ink" in s else None
                kinds = ("gt",) + (("unmatched",) if r not in pair_of else ("loc",) if iou[r, pair_of[r]] < 0.5 else ())
                for kind in kinds:
                    c[f"{kind}_by_area"][area_bin] += 1
                    c[f"{kind}_by_place"][place] += 1
                    if ink_bin is not None:
                        c[f"{kind}_by_ink"][ink_bin] += 1
            c["pure_fp"] += len(pred) - len(pairs)
            for r, q in pairs:
                g, p = gt[r], pred[q]
                if "gt_full_boxes" in s:
                    full = s["gt_full_boxes"][t, ids[r]]
                    c["centre_errors"].append((_at_edge(g, size), _iou(g, p) >= 0.5, _area(g) / max(_area(full), 1),
                                               _centre_error(s["pred_glimpse_boxes"][t, pred_slots[q]], full, size)))
                c["side_diffs"].append(np.asarray(p, np.float64) - np.asarray(g, np.float64))
                j = ids[r]
                prev = s["gt_boxes"][t - 1, j] if t and s["gt_present"][t - 1, j] else None
                speed = None if prev is None else float(np.hypot((g[0] + g[2] - prev[0] - prev[2]) / 2,
                                                                  (g[1] + g[3] - prev[1] - prev[3]) / 2))
                speed_bin = None if speed is None else _bin(SPEED_BINS, speed)
                c["gt_by_frame"][t] += 1
                if speed_bin is not None:
                    c["gt_by_speed"][speed_bin] += 1
                edge = _at_edge(g, size)
                c["edge"] += edge
                c["two"] += len(gt) == 2
                if _iou(g, p) >= 0.5:
                    c["tp"] += 1
                    continue
                c["loc"] += 1
                c["loc_by_frame"][t] += 1
                if speed_bin is not None:
                    c["loc_by_speed"][speed_bin] += 1
                    c["loc_moved"] += 1
                    # Lagging: the box fits where the digit was at t − 1 better than where it is now.
                    c["loc_lagging"] += _iou(prev, p) > _iou(g, p)
                c["loc_edge"] += edge
                c["loc_two"] += len(gt) == 2
                area_g, area_p = _area(g), _area(p)
                off = max(abs((p[0] + p[2] - g[0] - g[2]) / 2) / max(g[2] - g[0], 1),
                          abs((p[1] + p[3] - g[1] - g[3]) / 2) / max(g[3] - g[1], 1))
                if off > 0.25:
                    c["loc_offset"] += 1
                elif area_p > area_g:
                    c["loc_larger"] += 1
                else:
                    c["loc_smaller"] += 1
    return c


FAINT = 10  # A digit with fewer pixels ≥ INK_LEVEL than this is faint (`two_digit_failures`; an INK_BINS edge).
TWO_DIGIT_CASES = ("fewer objects than digits, one over both", "fewer objects than digits",
                   "both objects on the other digit", f"faint digit (< {FAINT} px ≥ {INK_LEVEL})",
                   "an object straddles both", "other")
ON_DIGIT = 0.3  # IoU at which an object counts as on a digit (`two_digit_failures`)
TOUCHES = 0.1  # IoU at which an object counts as reaching into a digit


def two_digit_failures(sequences):
    """What the objects do where a digit of a two-digit frame fails (no object, or its object at IoU < 0.5).

    The per-frame matching is `classify`'s (`match_frame`). Each failed digit's frame is
    put in the first of TWO_DIGIT_CASES that holds: the frame has fewer present objects than digits and one object
    reaches into both digits (IoU ≥ TOUCHES with each), or fewer objects at all; two objects sit on the other digit
    (IoU ≥ ON_DIGIT with it, their best digit), so this one is left over though the count is right; the digit is
    faint (fewer than FAINT pixels ≥ INK_LEVEL, when the sequences carry `gt_ink`); an object reaches into both
    digits; anything else. Each case is split by whether the two digits' boxes overlap (a crossing).

    Returns {"one": (failed, digits) of one-digit frames, "two": (failed, digits) of two-digit frames,
    "cases": {(case, "overlapping" | "apart"): failed digits}}; frames with more digits are left out.
    """
    import numpy as np

    out = {"one": [0, 0], "two": [0, 0],
           "cases": {(case, kind): 0 for case in TWO_DIGIT_CASES for kind in ("overlapping", "apart")}}
    for s in sequences:
        for t in range(s["gt_boxes"].shape[0]):
            ids, gt, _, pred, iou, pairs = match_frame(s, t)  # iou [G_t, P_t]
            if not 1 <= len(ids) <= 2:
                continue
            good = {r for r, q in pairs if iou[r, q] >= 0.5}
            tally = out["one" if len(gt) == 1 else "two"]
            tally[0] += len(gt) - len(good)
            tally[1] += len(gt)
            if len(gt) == 1:
                continue
            for r in set(range(2)) - good:
                other = 1 - r
                both = bool(pred) and bool(np.any((iou[r] >= TOUCHES) & (iou[other] >= TOUCHES)))
                on_other = np.sum((iou[other] >= ON_DIGIT) & (iou[other] >= iou[r]))
                faint = "gt_ink" in s and s["gt_ink"][t, ids[r]] < FAINT
                case = (TWO_DIGIT_CASES[0] if len(pred) < 2 and both else TWO_DIGIT_CASES[1] if len(pred) < 2
                        else TWO_DIGIT_CASES[2] if on_other >= 2 else TWO_DIGIT_CASES[3] if faint
                        else TWO_DIGIT_CASES[4] if both else TWO_DIGIT_CASES[5])
                out["cases"][(case, "overlapping" if _iou(gt[0], gt[1]) > 0 else "apart")] += 1
    return out


SWITCH_NEW = ("not detected at t − 1", "on this digit at t − 1, unmatched",
              "matched to another digit, the two overlap", "matched to another digit, apart", "elsewhere at t − 1")
SWITCH_OLD = ("not detected", "on the digit, IoU < 0.5", "elsewhere")


def switch_causes(sequences):
    """Identity switches by what the digit's new object q did at t − 1 and where its old object p is at t.

    The matching is TrackEval's CLEAR, on the inputs `tracking_metrics` gives TrackEval: per frame, the Hungarian
    method on IoU plus 1,000 for the pair matched in the last matched frame, pairs below IoU 0.5 dropped; a switch
    is a digit matched to another object than the one it was last matched to. So the counts sum to TrackEval's
    IDSW on the same sequences. q "on this digit" overlaps it at t − 1 without being its match (a second object on
    one digit, or its object misplaced); "matched to another digit" is a swap, split by whether the two digits'
    boxes overlap at t (a crossing).

    Returns {(new, old): count} over SWITCH_NEW × SWITCH_OLD.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from evaluation import tracking_metrics

    eps = np.finfo("float").eps  # TrackEval's tolerance: IoU of exactly 0.5 matches.
    counts = {(new, old): 0 for new in SWITCH_NEW for old in SWITCH_OLD}
    for s in sequences:
        data = tracking_metrics.sequence_data(*(s[key] for key in tracking_metrics.SEQUENCE_KEYS))
        # The digit and object ids TrackEval sees, on the slots (−1: absent), to find their boxes by id.
        frames = dict(s, digit=data["gt_slot_ids"], obj=data["tracker_slot_ids"])  # [T, S], [T, N]
        last, previous = {}, {}  # digit → its last matched object; digit → its object in the last matched frame
        per_frame = zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"])
        for t, (digits, objects, iou) in enumerate(per_frame):
            if not len(digits) or not len(objects):
                continue
            kept = np.array([[previous.get(j) == n for n in objects] for j in digits])
            score = np.where(iou < 0.5 - eps, 0.0, iou + 1000.0 * kept)
            rows, cols = linear_sum_assignment(-score)
            matched = {int(digits[r]): int(objects[q]) for r, q in zip(rows, cols) if score[r, q] > eps}
            for j, new in matched.items():
                old = last.get(j)
                last[j] = new
                if old is not None and old != new:
                    counts[(_switch_new(frames, t, j, new, previous), _switch_old(frames, t, j, old))] += 1
            previous = matched
    return counts


def _box(frames, t, key, i):
    """The box of digit (key "digit") or object ("obj") i at frame t, or None where it is not there."""
    import numpy as np

    slots = np.flatnonzero(frames[key][t] == i)
    return frames["gt_boxes" if key == "digit" else "pred_boxes"][t, slots[0]] if len(slots) else None


def _switch_new(frames, t, j, new, previous):
    """What digit j's new object did at t − 1 (`switch_causes`)."""
    box = _box(frames, t - 1, "obj", new)
    if box is None:
        return SWITCH_NEW[0]
    others = [k for k, n in previous.items() if n == new]
    if others:
        other = _box(frames, t, "digit", others[0])
        crossing = other is not None and _iou(_box(frames, t, "digit", j), other) > 0
        return SWITCH_NEW[2] if crossing else SWITCH_NEW[3]
    here = _box(frames, t - 1, "digit", j)
    return SWITCH_NEW[1] if here is not None and _iou(here, box) > 0 else SWITCH_NEW[4]


def _switch_old(frames, t, j, old):
    """Where digit j's old object is at t (`switch_causes`)."""
    box = _box(frames, t, "obj", old)
    if box is None:
        return SWITCH_OLD[0]
    return SWITCH_OLD[1] if _iou(_box(frames, t, "digit", j), box) > 0 else SWITCH_OLD[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory (sqair-train --workdir)")
    parser.add_argument("--checkpoint", help="checkpoint prefix (default: the latest)")
    parser.add_argument("--num", type=int, default=1000, help="held-out test sequences (default 1000)")
    parser.add_argument("--k", type=int, default=5, help="particles (default 5)")
    parser.add_argument("--data", help="data directory (default: the run's own)")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="boxes of latents refined by this many steps (sqair-eval --refine-steps; default 0)")
    parser.add_argument("--motion-weight", type=float,
                        help="the refinement's smooth-motion weight (sqair-eval --motion-weight; default: the "
                             "package's)")
    parser.add_argument("--figure", help="also write this PNG: inputs over reconstructions (boxes coloured by id) of "
                                         "the first 6 sequences where a digit in --figure-place is missed or "
                                         "mislocalised")
    parser.add_argument("--figure-place", default="along", choices=PLACES,
                        help="where the digits of --figure fail (default: along the edge)")
    args = parser.parse_args()

    import numpy as np

    from evaluation import tracking_metrics
    from evaluation import evaluator
    from sqair_tf import refinement
    from trainers import checkpoints

    model, config, step = checkpoints.load_model(args.run, args.checkpoint)
    sequences = []
    size = config.model.image_shape[0]
    shown = {"frames": [], "canvas": [], "boxes": [], "object_ids": [], "z_pres": []}  # per figure sequence

    def on_batch(batch, _, best):
        batch_sequences = evaluator.tracking_sequences(batch, best)
        # The digits' whole boxes: every digit starts inside the canvas, so its box at t = 0 is whole and moves
        # with its crop's corner.
        corners = np.tile(batch["corners"].numpy(), 2)  # [B, T, S, 4]
        full = batch["boxes"].numpy()[:, :1] - corners[:, :1] + corners  # [B, T, S, 4]
        ink = ink_counts(batch["frames"].numpy(), batch["boxes"].numpy())  # [B, T, S]
        for sequence, boxes, digits_ink in zip(batch_sequences, full, ink):
            sequence["gt_full_boxes"], sequence["gt_ink"] = boxes, digits_ink
        sequences.extend(batch_sequences)
        for b, sequence in enumerate(batch_sequences):
            if args.figure and len(shown["frames"]) < 6:
                c = classify([sequence], size)
                if c["loc_by_place"][args.figure_place] + c["unmatched_by_place"][args.figure_place]:
                    shown["frames"].append(batch["frames"][b].numpy())
                    for key in ("canvas", "boxes", "object_ids", "z_pres"):
                        shown[key].append(np.asarray(best[key][b]))

    evaluator.evaluate(model, args.data or config.data_dir, "test", args.num, args.k, chunk=args.k, batch_size=50,
                        seed=0, jit_compile=True, on_batch=on_batch, progress=True, refine_steps=args.refine_steps,
                        motion_weight=args.motion_weight)
    t = tracking_metrics.evaluate_tracking(sequences)
    c = classify(sequences, size)
    if args.figure and shown["frames"]:
        from evaluation import figures

        stacked = {key: np.stack(value) for key, value in shown.items()}
        figures.reconstruction_figure_of(stacked.pop("frames"), stacked, rows=6, scale=3).save(args.figure)
        print(f"wrote {args.figure}: {len(shown['frames'])} sequences with a digit missed or mislocalised "
              f"({args.figure_place})")
    gt = c["gt"]
    print(f"{args.run} step {step}: {len(sequences)} sequences, {gt} visible digit boxes, K = {args.k}, "
          f"{args.refine_steps} refinement steps, motion weight "
          f"{refinement.effective_motion_weight(args.refine_steps, args.motion_weight):g}")
    print(f"TrackEval: MOTA {t['MOTA']:.4f} = 1 − (FN {t['FN']} + FP {t['FP']} + IDSW {t['IDSW']}) / {gt}")
    print("| cause | boxes | share of GT | MOTA lost |\n|---|---|---|---|")
    rows = [("matched at IoU ≥ 0.5", c["tp"], 0),
            ("localisation: matched at IoU < 0.5 (1 FN + 1 FP each)", c["loc"], 2 * c["loc"]),
            ("digit with no object (FN)", c["unmatched"], c["unmatched"]),
            ("object with no digit (FP)", c["pure_fp"], c["pure_fp"]),
            ("identity switches (TrackEval)", t["IDSW"], t["IDSW"])]
    for name, n, lost in rows:
        print(f"| {name} | {n} | {n / gt:.3f} | {lost / gt:.3f} |")
    print(f"\nlocalisation failures: {c['loc_edge'] / max(c['edge'], 1):.3f} of matched digits touching the canvas "
          f"edge ({c['edge']}) vs {(c['loc'] - c['loc_edge']) / max(c['tp'] + c['loc'] - c['edge'], 1):.3f} of "
          f"the others; {c['loc_two'] / max(c['two'], 1):.3f} in two-digit frames vs "
          f"{(c['loc'] - c['loc_two']) / max(c['tp'] + c['loc'] - c['two'], 1):.3f} in one-digit frames")
    print(f"their kind: centre off by > 1/4 of the digit {c['loc_offset']}, box larger {c['loc_larger']}, "
          f"box smaller {c['loc_smaller']}")
    print(f"lagging (box overlaps the digit's previous place more than its current one): {c['loc_lagging']} of the "
          f"{c['loc_moved']} localisation failures after the first frame")
    print("localisation failures by frame: " + ", ".join(
        f"t={t}: {n / max(g, 1):.3f}" for t, (n, g) in enumerate(zip(c["loc_by_frame"], c["gt_by_frame"]))))
    areas = list(AREA_BINS) + [float("inf")]
    print("| visible box area (px) | share of GT | localisation failure | no object |\n|---|---|---|---|")
    for lo, hi, g, n, u in zip(areas, areas[1:], c["gt_by_area"], c["loc_by_area"], c["unmatched_by_area"]):
        print(f"| [{lo:g}, {hi:g}) | {g / max(gt, 1):.3f} | {n / max(g, 1):.3f} | {u / max(g, 1):.3f} |")
    inks = list(INK_BINS) + [float("inf")]
    print(f"| pixels ≥ {INK_LEVEL} in the digit's box | share of GT | localisation failure | no object | MOTA lost "
          "|\n|---|---|---|---|---|")
    for lo, hi, g, n, u in zip(inks, inks[1:], c["gt_by_ink"], c["loc_by_ink"], c["unmatched_by_ink"]):
        print(f"| [{lo:g}, {hi:g}) | {g / max(gt, 1):.3f} | {n / max(g, 1):.3f} | {u / max(g, 1):.3f} | "
              f"{(2 * n + u) / max(gt, 1):.3f} |")
    print("| where the digit is | share of GT | localisation failure | no object | MOTA lost |\n|---|---|---|---|---|")
    for place in PLACES:
        g, n, u = (c[f"{key}_by_place"][place] for key in ("gt", "loc", "unmatched"))
        print(f"| {place} | {g / max(gt, 1):.3f} | {n / max(g, 1):.3f} | {u / max(g, 1):.3f} | "
              f"{(2 * n + u) / max(gt, 1):.3f} |")
    print("| matched digits | pairs | visible share of the digit's box (median) | glimpse centre to the whole "
          "digit's centre, px (median, q75) |\n|---|---|---|---|")
    errors = np.asarray(c["centre_errors"], np.float64).reshape(-1, 4)  # [pairs, 4]
    for name, edge, good in (("inside, IoU ≥ 0.5", 0, 1), ("inside, IoU < 0.5", 0, 0),
                             ("at the edge, IoU ≥ 0.5", 1, 1), ("at the edge, IoU < 0.5", 1, 0)):
        rows = errors[(errors[:, 0] == edge) & (errors[:, 1] == good)]
        if len(rows):
            print(f"| {name} | {len(rows)} | {np.median(rows[:, 2]):.2f} | {np.median(rows[:, 3]):.1f}, "
                  f"{np.percentile(rows[:, 3], 75):.1f} |")
    switches = switch_causes(sequences)
    print(f"| identity switches ({sum(switches.values())}; TrackEval {t['IDSW']}): the new object at t − 1 | "
          + " | ".join(f"old object {old}" for old in SWITCH_OLD) + " |\n|---|---|---|---|")
    for new in SWITCH_NEW:
        print(f"| {new} | " + " | ".join(str(switches[(new, old)]) for old in SWITCH_OLD) + " |")
    two = two_digit_failures(sequences)
    print(f"digits failing (no object, or IoU < 0.5): {two['one'][0] / max(two['one'][1], 1):.3f} of "
          f"{two['one'][1]} in one-digit frames, {two['two'][0] / max(two['two'][1], 1):.3f} of {two['two'][1]} in "
          "two-digit frames, where they fail because:")
    print("| two-digit frames: the failed digit's case | digits apart | digits overlapping | share of GT |\n"
          "|---|---|---|---|")
    for case in TWO_DIGIT_CASES:
        apart, overlapping = two["cases"][(case, "apart")], two["cases"][(case, "overlapping")]
        print(f"| {case} | {apart} | {overlapping} | {(apart + overlapping) / max(gt, 1):.3f} |")
    diffs = np.asarray(c["side_diffs"]).reshape(-1, 4)  # [pairs, 4]
    print("signed box error of matched pairs, pred − truth in px (y_min, x_min, y_max, x_max): mean "
          + ", ".join(f"{v:+.2f}" for v in diffs.mean(axis=0)) + "; median "
          + ", ".join(f"{v:+.1f}" for v in np.median(diffs, axis=0)))
    edges = list(SPEED_BINS) + [float("inf")]
    print("localisation failures by the digit's speed (px/frame): " + ", ".join(
        f"[{lo:g}, {hi:g}): {n / max(g, 1):.3f} of {g}" for lo, hi, n, g in
        zip(edges, edges[1:], c["loc_by_speed"], c["gt_by_speed"])))


if __name__ == "__main__":
    main()
