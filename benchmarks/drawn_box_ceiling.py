"""What the drawn-box rule alone costs a perfect tracker (issue 10): the metrics' ceiling for SQAIR's boxes.

The ground truth boxes every *non-zero* pixel of a digit on the canvas, and a digit counts as visible while any of
them is inside (`data_pipelines.moving_mnist`). SQAIR's `boxes` cover the pixels its objects render above
`glimpse.DRAWN_THRESHOLD` (`glimpse.drawn_boxes`). So even a model that drew every digit exactly where it is, with
the right identity, would lose the digits' faint anti-aliased rims, and whole faint slivers at the canvas edge.
This measures that loss: it generates held-out-like sequences from the test digits, then generates them again with
every template pixel at or below the threshold set to zero (same random stream, so the same digits and paths), and
scores the second set's boxes, visibility and true ids as a tracker's output against the first set's ground truth
with `evaluation.tracking_metrics` (TrackEval, IoU 0.5), per threshold.

Usage:
    python benchmarks/drawn_box_ceiling.py [--num 1000] [--seed 0] [--preset paper] [--thresholds 0.1,0.2,0.3]
"""

import argparse
import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def perfect_tracker(config, digits, num, seed, threshold):
    """Per-sequence inputs of `tracking_metrics.evaluate_tracking`: the true tracks, boxed at `threshold`."""
    import numpy as np

    from data_pipelines import moving_mnist

    truth = moving_mnist.generate_chunk(config, digits, num, np.random.default_rng(seed))
    faint = digits.templates <= round(threshold * 255)
    cut = dataclasses.replace(digits, templates=np.where(faint, 0, digits.templates).astype(np.uint8))
    drawn = moving_mnist.generate_chunk(config, cut, num, np.random.default_rng(seed))
    assert np.array_equal(truth["digit_index"], drawn["digit_index"])  # The same draws: only the pixels differ.
    sequences = []
    for i in range(num):
        ids = np.broadcast_to(truth["object_ids"][i], truth["visible"][i].shape)  # [T, S]
        sequences.append({"gt_boxes": truth["boxes"][i], "gt_ids": ids, "gt_present": truth["visible"][i],
                          "pred_boxes": drawn["boxes"][i].astype(np.float32), "pred_ids": ids,
                          "pred_present": drawn["visible"][i].astype(np.float32)})
    return sequences


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=1000, help="sequences (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--preset", default="paper", help="moving-MNIST preset (default: paper)")
    parser.add_argument("--thresholds", default="0.1,0.2,0.3",
                        help="comma-separated intensity thresholds in [0, 1) (default 0.1,0.2,0.3)")
    args = parser.parse_args()

    from data_pipelines import digits as digits_lib
    from data_pipelines import moving_mnist
    from evaluation import tracking_metrics
    from sqair_tf import glimpse

    config = moving_mnist.preset(args.preset)
    digits = digits_lib.load_digits(digits_lib.EMBEDDED, "test")
    print(f"{args.num} sequences of the {args.preset!r} preset from the test digits, seed {args.seed}; "
          f"the drawn-box threshold in use is {glimpse.DRAWN_THRESHOLD}")
    print("| threshold | MOTA | IDF1 | HOTA | FN | FP | GT boxes |\n|---|---|---|---|---|---|---|")
    for threshold in (float(v) for v in args.thresholds.split(",")):
        t = tracking_metrics.evaluate_tracking(perfect_tracker(config, digits, args.num, args.seed, threshold))
        print(f"| {threshold:g} | {t['MOTA']:.4f} | {t['IDF1']:.4f} | {t['HOTA']:.4f} | {t['FN']} | {t['FP']} | "
              f"{t['num_gt_dets']} |", flush=True)


if __name__ == "__main__":
    main()
