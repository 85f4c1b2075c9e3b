"""`sqair-demo`: the project's main job, end to end on the embedded digits, in one run directory.

What it does today (issue 2): generate a small moving multi-MNIST train and test set from the embedded 10k MNIST
digits and draw a preview of the test sequences with their ground-truth boxes. Training, evaluation and export
extend this same command as they land.

    sqair-demo --rundir runs/demo
"""

import argparse
import os
import sys
import time

from data_pipelines.errors import DataError


def _parser():
    parser = argparse.ArgumentParser(prog="sqair-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rundir", default="runs/demo", help="where everything is written (default: runs/demo)")
    parser.add_argument("--num-train", type=int, default=2000, help="training sequences to generate (default 2000)")
    parser.add_argument("--num-test", type=int, default=500, help="held-out sequences to generate (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--preset", default="paper", help="data preset: paper or hard (default: paper)")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from tqdm import tqdm

    from data_pipelines import cli as data_cli
    from data_pipelines import generate, moving_mnist

    start = time.time()
    data_dir = os.path.join(args.rundir, "data")
    try:
        config = moving_mnist.preset(args.preset)
        for split, num in (("train", args.num_train), ("test", args.num_test)):
            with tqdm(total=num, unit="seq", desc=f"data: {split}", file=sys.stderr) as bar:
                manifest = generate.generate_split(data_dir, split, num, args.seed, config, progress=bar.update)
        print(f"digits: {manifest['digits']}")
        preview = os.path.join(args.rundir, "data_preview.png")
        code = data_cli.main(["preview", data_dir, "--split", "test", "--num", "8", "--out", preview])
        if code:
            return code
    except DataError as e:
        print(f"sqair-demo: error: {e}", file=sys.stderr)
        return 2
    print(f"\nmain job done in {time.time() - start:.0f} s; everything is under {os.path.abspath(args.rundir)}:")
    print(f"  data (TFRecords + manifests): {os.path.abspath(data_dir)}")
    print(f"  preview of held-out sequences with ground-truth boxes: {os.path.abspath(preview)}")
    return 0


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


if __name__ == "__main__":
    run()
