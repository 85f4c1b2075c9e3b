"""Tracking quality of refined boxes against the refinement's step size and number of steps (issue 10).

Runs one evaluation of a checkpoint (the best of K particles per sequence, as `sqair-eval`), then refines those same
particles' latents with every (rate, steps, motion weight) of the grid (`SequenceModel.refine`) and scores each with
TrackEval, so the rows differ only in the refinement. The default grid is the one that chose
`sqair_tf.refinement.LEARNING_RATE` and `STEPS` (benchmarks/RESULTS.md, issue 10, "Refining the boxes at test
time").

Usage:
    python benchmarks/refinement_sweep.py RUN [--checkpoint PREFIX] [--num 200] [--k 5] [--data DATA]
        [--split test] [--rates 0.02,0.05,0.1] [--steps 0,10,30,50,100,200]
        [--motion-weights 0]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory (sqair-train --workdir)")
    parser.add_argument("--checkpoint", help="checkpoint prefix (default: the latest)")
    parser.add_argument("--num", type=int, default=200, help="sequences (default 200)")
    parser.add_argument("--split", default="test", help="split to score (default test; train to choose a setting "
                                                          "without looking at the held-out sequences)")
    parser.add_argument("--k", type=int, default=5, help="particles (default 5)")
    parser.add_argument("--data", help="data directory (default: the run's own)")
    parser.add_argument("--rates", default="0.02,0.05,0.1", help="Adam step sizes, comma-separated")
    parser.add_argument("--steps", default="0,10,30,50,100,200", help="numbers of steps, comma-separated")
    parser.add_argument("--motion-weights", default="0", help="weights λ of the glimpse centres' acceleration "
                                                             "(refinement.acceleration_penalty), comma-separated")
    args = parser.parse_args()

    import tensorflow as tf

    from evaluation import evaluator
    from evaluation import tracking_metrics
    from trainers import checkpoints

    model, config, step = checkpoints.load_model(args.run, args.checkpoint)
    grid = [(0.0, 0, 0.0)] + [(float(rate), int(n), float(weight)) for rate in args.rates.split(",")
                              for n in args.steps.split(",") if int(n) > 0 for weight in args.motion_weights.split(",")]
    scored = {cell: [] for cell in grid}
    seconds = {cell: 0.0 for cell in grid}
    functions = {cell: tf.function(lambda frames, best, cell=cell: model.refine(
        frames, best, steps=cell[1], learning_rate=cell[0], motion_weight=cell[2]), jit_compile=True)
        for cell in grid if cell[1]}

    def on_batch(batch, _, best):
        latents = {key: best[key] for key in ("z_what", "z_where", "z_pres", "object_ids")}
        for cell in grid:
            start = time.perf_counter()
            boxes = functions[cell](batch["frames"], latents)["boxes"].numpy() if cell[1] else best["boxes"]
            seconds[cell] += time.perf_counter() - start
            scored[cell].extend(evaluator.tracking_sequences(batch, dict(best, boxes=boxes)))

    evaluator.evaluate(model, args.data or config.data_dir, args.split, args.num, args.k, chunk=args.k, batch_size=50,
                       seed=0, jit_compile=True, on_batch=on_batch, progress=True)
    print(f"{args.run} step {step}: {args.num} {args.split} sequences, K = {args.k}, the same best particles in "
          "every row\n")
    print("| rate | steps | motion weight | MOTA | IDF1 | HOTA | FN | FP | ID switches | refinement seconds (incl. "
          "compile) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cell in grid:
        t = tracking_metrics.evaluate_tracking(scored[cell])
        print(f"| {cell[0]:g} | {cell[1]} | {cell[2]:g} | {t['MOTA']:.4f} | {t['IDF1']:.4f} | {t['HOTA']:.4f} | "
              f"{t['FN']} | {t['FP']} | {t['IDSW']} | {seconds[cell]:.1f} |")


if __name__ == "__main__":
    main()
