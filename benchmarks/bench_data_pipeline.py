"""Benchmarks of the moving multi-MNIST data path (issue 2).

1. Generation of the paper's full sets (60,000 train + 10,000 test sequences) with the CLI's code path.
2. tf.data throughput of the training pipeline (parse, decode to float32, shuffle, batch 32, prefetch), in
   sequences/s over several passes, which must stay far above what training consumes (target ≥ 5,000 seq/s).

Usage:
    python benchmarks/bench_data_pipeline.py [--workdir /tmp/sqair_bench_data] [--batches 400]
Prints one line per measurement; results are recorded in benchmarks/RESULTS.md.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/sqair_bench_data", help="where the data are written")
    parser.add_argument("--batches", type=int, default=400, help="batches timed per throughput pass")
    parser.add_argument("--passes", type=int, default=3, help="throughput passes")
    parser.add_argument("--skip-generate", action="store_true", help="reuse data already in --workdir")
    args = parser.parse_args()

    from data_pipelines import dataset, generate, moving_mnist

    config = moving_mnist.preset("paper")
    if not args.skip_generate:
        total = 0.0
        for split, num in (("train", 60000), ("test", 10000)):
            start = time.perf_counter()
            generate.generate_split(args.workdir, split, num, seed=0, config=config)
            elapsed = time.perf_counter() - start
            total += elapsed
            print(f"generate {split}: {num} sequences in {elapsed:.1f} s ({num / elapsed:.0f} seq/s)")
        print(f"generate total (60,000 + 10,000): {total:.1f} s on {os.cpu_count()} cores (target < 180 s)")

    import tensorflow as tf

    data_config = dataset.DataConfig(data_dir=args.workdir, split="train", global_batch_size=32, seed=0)
    ds, _ = dataset.build_dataset(data_config)
    it = iter(ds)
    for _ in range(20):  # Warm-up: fill the shuffle buffer and the prefetch queue.
        next(it)
    rates = []
    for p in range(args.passes):
        start = time.perf_counter()
        for _ in range(args.batches):
            batch = next(it)
        _ = batch["frames"].numpy()
        elapsed = time.perf_counter() - start
        rates.append(args.batches * 32 / elapsed)
        print(f"tf.data pass {p}: {rates[-1]:.0f} sequences/s ({args.batches / elapsed:.0f} batches/s of 32)")
    print(f"tf.data throughput: median {sorted(rates)[len(rates) // 2]:.0f} sequences/s (target ≥ 5,000); "
          f"TF {tf.__version__}")


if __name__ == "__main__":
    main()
