"""The box rule's threshold against tracking quality, for one model (issue 10; BUILD.md "Boxes").

On an observed frame an object's box covers the frame's foreground pixels it explains: it renders more than a
threshold there and no other object renders more (`glimpse.drawn_boxes` with frames, `glimpse.EXPLAINED_THRESHOLD`,
what the tracking metrics use). `--rule drawn` sweeps the rule of imagined frames instead, the pixels it renders
above a threshold (`glimpse.DRAWN_THRESHOLD`, which the metrics used before). This scores one model at several
thresholds from one inference pass: the best of K particles of each of the first `--num` sequences of `--split`,
with the same random numbers `sqair-eval` uses (seed 0), whose decoded glimpses are then thresholded at each value.
Choose on the training split; report the test split only for the choice.

Usage:
    python benchmarks/drawn_threshold_sweep.py (--workdir RUN [--checkpoint PREFIX] | --pretrained NAME) --data DATA
        [--split train] [--num 300] [--k 5] [--jit] [--refine-steps N [--motion-weight λ]]
        [--rule explained|drawn] [--thresholds 0.005,0.01,0.02]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sweep(model, data_dir, split, num, k, thresholds, seed=0, batch_size=50, jit_compile=False, refine_steps=0,
          chunk=None, motion_weight=None, rule="explained"):
    """{threshold: TrackEval metrics} of the best particle's boxes (`rule` "explained" on the frames, or "drawn")
    at each threshold; the inference
    (`evaluator.evaluate` with K = `k` in chunks of `chunk` particles, default one chunk as `sqair-eval --chunk K`),
    and so the particle chosen, is the same for every threshold. With `jit_compile` as `sqair-eval --jit` (XLA
    draws other random numbers than the eager kernels; `benchmarks/bench_tracking.py` scores without); with
    `refine_steps` and `motion_weight` as `sqair-eval --refine-steps --motion-weight` (the boxes are drawn from
    the refined latents)."""
    import numpy as np

    from evaluation import evaluator
    from evaluation import tracking_metrics
    from sqair_tf import glimpse

    sequences = {t: [] for t in thresholds}

    def on_batch(batch, _, best):
        for t in thresholds:
            boxes = glimpse.drawn_boxes(best["glimpses"], best["z_where"], best["z_pres"],
                                        model.config.image_shape[:2], threshold=t,
                                        shift_range=model.config.where_shift_range,
                                        frames=batch["frames"] if rule == "explained" else None)  # [B, T, N, 4]
            sequences[t].extend(evaluator.tracking_sequences(batch, dict(best, boxes=np.asarray(boxes))))

    evaluator.evaluate(model, data_dir, split, num, k, chunk=chunk or k, batch_size=batch_size, seed=seed,
                       jit_compile=jit_compile, on_batch=on_batch, keep_box_inputs=True, refine_steps=refine_steps,
                       motion_weight=motion_weight)
    return {t: tracking_metrics.evaluate_tracking(sequences[t]) for t in thresholds}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="run directory (sqair-train --workdir)")
    source.add_argument("--pretrained", metavar="NAME", help="a shipped model (mnist)")
    parser.add_argument("--checkpoint", help="checkpoint prefix (default: the run's latest)")
    parser.add_argument("--data", required=True, help="data directory (sqair-data generate)")
    parser.add_argument("--split", default="train", help="split to score (default train: choose there)")
    parser.add_argument("--num", type=int, default=300, help="sequences (default 300)")
    parser.add_argument("--k", type=int, default=5, help="particles (default 5, the training K)")
    parser.add_argument("--jit", action="store_true", help="XLA-compile the inference (as sqair-eval's default)")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="draw the boxes from latents refined by this many steps (sqair-eval --refine-steps)")
    parser.add_argument("--motion-weight", type=float,
                        help="the refinement's smooth-motion weight (sqair-eval --motion-weight; default: the "
                             "package's)")
    parser.add_argument("--rule", choices=("explained", "drawn"), default="explained",
                        help="explained: the observed pixels each object explains (what the metrics use; "
                             "default); drawn: the pixels it renders (the rule of imagined frames)")
    parser.add_argument("--thresholds",
                        help="comma-separated thresholds (default 0.005,0.01,0.02 for explained, "
                             "0.1,0.15,0.2,0.25,0.3 for drawn)")
    args = parser.parse_args()

    from trainers import checkpoints
    from trainers import pretrained

    workdir, checkpoint = (pretrained.locate(args.pretrained) if args.pretrained
                           else (args.workdir, args.checkpoint))
    model, _, step = checkpoints.load_model(workdir, checkpoint)
    default = "0.005,0.01,0.02" if args.rule == "explained" else "0.1,0.15,0.2,0.25,0.3"
    thresholds = tuple(float(t) for t in (args.thresholds or default).split(","))
    results = sweep(model, args.data, args.split, args.num, args.k, thresholds, jit_compile=args.jit,
                    refine_steps=args.refine_steps, motion_weight=args.motion_weight, rule=args.rule)
    print(f"{args.pretrained or workdir} step {step}, {args.split} split, first {args.num} sequences, K = {args.k}, "
          f"{args.refine_steps} refinement steps, {args.rule} boxes\n")
    print("| threshold | MOTA | IDF1 | HOTA | FN | FP | ID switches |\n|---|---|---|---|---|---|---|")
    for t, m in results.items():
        print(f"| {t:g} | {m['MOTA']:.4f} | {m['IDF1']:.4f} | {m['HOTA']:.4f} | {m['FN']} | {m['FP']} | "
              f"{m['IDSW']} |")


if __name__ == "__main__":
    main()
