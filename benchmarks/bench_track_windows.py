"""Tracking in windows (issue 10): does picking the best particle every W frames track better or worse than
picking it once per sequence?

`sqair-eval` scores the highest-weight particle of K independent particles of the whole sequence. `sqair-track`
streams video in windows (`SQAIR.track_window`): each window's K particles start from the best particle of the
previous window, an argmax resampling step every W frames. This scores both on the first `--num` test sequences
(T = 10) for each window length in `--windows` (W = T is the per-sequence choice): the best particle's own counting
accuracy (its inferred count against the sequence's digit count, and against the visible digits, per frame; not
importance-weighted over particles as `sqair-eval`'s) and TrackEval's MOTA, IDF1, HOTA with the model's boxes
at IoU 0.5. Eager per-window calls of one `tf.function` (no XLA); the random numbers differ from `sqair-eval`'s.

Usage:
    python benchmarks/bench_track_windows.py (--pretrained mnist | --workdir RUN [--checkpoint PREFIX])
        --data DATA [--num 500] [--k 5] [--windows 10,2,1]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def score_windows(model, data, num, k, window, batch_size=50):
    """(counting, visible-count accuracy, tracking metrics dict) of windowed tracking with windows of `window`."""
    import numpy as np
    import tensorflow as tf

    from evaluation import evaluator, tracking_metrics

    ds, _, _ = evaluator.stream_batches(data, "test", num, batch_size)
    fn = tf.function(lambda f, s, first, seed: model.track_window(f, s, first, seed, num_particles=k))
    keys = ("boxes", "glimpse_boxes", "object_ids", "z_pres", "num_objects")
    sequences, correct, visible = [], [], []
    for i, batch in enumerate(ds):
        frames = batch["frames"]  # [B, T, H, W, C]
        state = model.initial_state(int(frames.shape[0]))
        seed = tf.constant([0, i], tf.int32)
        parts = []
        for first in range(0, int(frames.shape[1]), window):
            best, _, state = fn(frames[:, first:first + window], state, tf.constant(first), seed)
            parts.append({key: best[key].numpy() for key in keys})  # each [B, W, ...]
        best = {key: np.concatenate([p[key] for p in parts], axis=1) for key in keys}  # [B, T, ...]
        sequences += evaluator.tracking_sequences(batch, best)
        correct.append(np.mean(best["num_objects"] == batch["count"].numpy()[:, None], axis=1))
        visible.append(np.mean(best["num_objects"] == batch["visible_count"].numpy(), axis=1))
    return (float(np.mean(np.concatenate(correct))), float(np.mean(np.concatenate(visible))),
            tracking_metrics.evaluate_tracking(sequences))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained", help="a model shipped with the package (e.g. mnist)")
    source.add_argument("--workdir", help="a run directory written by sqair-train")
    parser.add_argument("--checkpoint", help="checkpoint prefix (default: the run's latest)")
    parser.add_argument("--data", required=True, help="data directory with a test split")
    parser.add_argument("--num", type=int, default=500, help="test sequences (default 500)")
    parser.add_argument("--k", type=int, default=5, help="particles per window (default 5)")
    parser.add_argument("--windows", default="10,2,1", help="comma-separated window lengths (default 10,2,1)")
    args = parser.parse_args()
    if args.pretrained:
        from trainers import pretrained
        model, _, step = pretrained.load(args.pretrained)
    else:
        from trainers import checkpoints
        model, _, step = checkpoints.load_model(args.workdir, args.checkpoint)
    print(f"step {step}, first {args.num} test sequences, K = {args.k}")
    print("| window W | counting (best particle) | visible-count | MOTA | IDF1 | HOTA | ID switches | FP | FN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for window in (int(w) for w in args.windows.split(",")):
        counting, visible, m = score_windows(model, args.data, args.num, args.k, window)
        print(f"| {window} | {counting:.4f} | {visible:.4f} | {m['MOTA']:.4f} | {m['IDF1']:.4f} | {m['HOTA']:.4f} | "
              f"{m['IDSW']} | {m['FP']} | {m['FN']} |", flush=True)


if __name__ == "__main__":
    main()
