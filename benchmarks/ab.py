"""Side-by-side A/B of a benchmark on one machine state: the current code against a baseline checkout.

Machines of this kind differ several-fold in speed, so speed claims are ratios measured in one run. This runs a
benchmark script of this checkout's `benchmarks/` alternately against the code of a baseline checkout (e.g.
`git worktree add ../base 56e5e2a`) and against this checkout's code, `--rounds` times each (A B A B ...), each in
a fresh process with that checkout first on `PYTHONPATH`, and prints every line the benchmark reports with a
numeric `steps/s` or `seq/s` figure, then the median per configuration and the ratio new / baseline.

Usage:
    python benchmarks/ab.py --baseline ../base [--rounds 2] -- bench_train.py --data DATA --lengths 10,3 --jit on
"""

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# "<configuration> | ... median 1.23 steps/s" (bench_train) or "<mode> first call ... = 1.23 steps/s" (bench_model)
# or "... (0.470 seq/s, ..." (bench_eval): the configuration is the text before the first "|" or " first".
FIGURE = re.compile(r"(?:median|=|\()\s*([0-9.]+) (steps/s|seq/s)")


def run(checkout, script_args):
    # The benchmark script is this checkout's (one harness for both sides); the code it imports is `checkout`'s.
    script = os.path.join(HERE, script_args[0])
    env = dict(os.environ, PYTHONPATH=checkout, TF_CPP_MIN_LOG_LEVEL="2")
    # cwd = the checkout too: `python -m` (as bench_eval uses) puts the working directory first on sys.path.
    out = subprocess.run([sys.executable, script] + script_args[1:], env=env, capture_output=True, text=True,
                         cwd=checkout)
    if out.returncode:
        sys.exit(f"{script} failed in {checkout}:\n{out.stderr[-3000:]}")
    figures = {}
    for line in out.stdout.splitlines():
        match = FIGURE.search(line)
        if match:
            key = re.split(r" \| | first call|: ", line)[0].strip()
            figures[key] = (float(match.group(1)), match.group(2))
            print(f"  [{os.path.basename(os.path.normpath(checkout))}] {line}", flush=True)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="checkout of the baseline code")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating (default 2)")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- SCRIPT.py [its arguments]")
    args = parser.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("name the benchmark script after --")
    current = os.path.dirname(HERE)
    results = {"baseline": collections.defaultdict(list), "new": collections.defaultdict(list)}
    for r in range(args.rounds):
        for side, checkout in (("baseline", os.path.abspath(args.baseline)), ("new", current)):
            print(f"round {r + 1}/{args.rounds}: {side} ({checkout})", flush=True)
            for key, value in run(checkout, script).items():
                results[side][key].append(value)
    print("\n| configuration | baseline | new | new / baseline |\n|---|---|---|---|")
    for key in results["new"]:
        new = [v for v, _ in results["new"][key]]
        old = [v for v, _ in results["baseline"].get(key, [])]
        unit = results["new"][key][0][1]
        if not old:
            print(f"| {key} | n/a | {statistics.median(new):.3f} {unit} | n/a |")
            continue
        print(f"| {key} | {statistics.median(old):.3f} {unit} ({', '.join(f'{v:.3f}' for v in old)}) | "
              f"{statistics.median(new):.3f} {unit} ({', '.join(f'{v:.3f}' for v in new)}) | "
              f"**{statistics.median(new) / statistics.median(old):.2f}x** |")


if __name__ == "__main__":
    main()
