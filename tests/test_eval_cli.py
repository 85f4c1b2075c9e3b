"""`sqair-eval` end to end on a `debug` run: JSON + Markdown report, figures, TensorBoard, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sqair_tf import refinement

pytestmark = pytest.mark.slow  # a trained run and the evaluator's CLI in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _eval(*args):
    return subprocess.run([sys.executable, "-m", "evaluation.cli", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_eval_writes_report_table_and_figures(debug_run):
    # With boxes from refined latents (`--refine-steps`, and the package's smooth-motion weight by default), which
    # must leave every particle-averaged figure as it is.
    out = _eval("--workdir", debug_run, "--k", "4", "--chunk", "2", "--num", "6", "--addition-train", "32", "--no-jit",
                "--figures", "--no-progress", "--refine-steps", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    stem = os.path.join(debug_run, "eval", f"test-step2-k4-refine2-motion{refinement.MOTION_WEIGHT:g}")
    with open(stem + ".json") as f:
        report = json.load(f)
    assert (report["step"], report["k"], report["chunk"], report["num_sequences"], report["seed"]) == (2, 4, 2, 6, 0)
    # The numbers are the evaluator's on exactly those sequences: recomputed here in-process with the same seeds.
    from evaluation import evaluator
    from trainers import checkpoints

    model, config, _ = checkpoints.load_model(debug_run)
    direct = evaluator.evaluate(model, config.data_dir, "test", 6, 4, chunk=2, batch_size=10, seed=0)
    for key, name in (("log_px_iwae", "iwae"), ("elbo", "elbo"), ("counting_accuracy", "counting_accuracy"),
                      ("log_likelihood", "log_likelihood"), ("kl", "kl")):
        np.testing.assert_allclose(report[key], direct[name], rtol=1e-5, atol=1e-3, err_msg=key)
    assert report["log_px_iwae"] >= report["elbo"] - 1e-3  # IWAE ≥ the mean ELBO of its particles (Jensen).
    ds, _, _ = evaluator.stream_batches(config.data_dir, "test", 6, 6)
    visible = int(next(iter(ds))["visible"].numpy().sum())
    t = report["tracking"]
    assert t["num_gt_dets"] == visible == t["TP"] + t["FN"]  # Every visible digit is scored, matched or missed.
    assert -1e9 < t["MOTA"] <= 1.0 and 0.0 <= t["HOTA"] <= 1.0 and 0.0 <= t["IDF1"] <= 1.0
    assert report["addition"]["test_frames"] == 6 * 5 and report["addition"]["train_frames"] == 32 * 5
    table = open(stem + ".md").read()
    assert table in out.stdout and "| HOTA |" in table and "| log p(x \\| z) (importance-weighted) |" in table
    assert table.count("\n|") == 21  # Header, rule and 19 metric rows: no row broken by a stray "|".
    assert 0.0 <= t["detection_count_accuracy"] <= 1.0
    assert f"| detections = visible digits | {t['detection_count_accuracy']:.4f} |" in table
    assert report["refine_steps"] == 2 and "| refinement steps before the boxes | 2 |" in table
    assert report["motion_weight"] == refinement.MOTION_WEIGHT
    assert f"| refinement's smooth-motion weight λ | {refinement.MOTION_WEIGHT:g} |" in table
    assert "| IoU of matched pairs, drawn boxes |" in table and "| IoU of matched pairs, glimpse boxes |" in table
    for name in ("drawn", "glimpse"):
        summary = report["box_iou"][name]
        assert summary["num_pairs"] == 0 or 0.0 < summary["q25"] <= summary["q50"] <= summary["q75"] <= 1.0

    figures = report["figures"]
    # 4 sequences of 5 frames, 32×32 pixels: reconstruction = 8 rows at scale 2 with 2-pixel gaps.
    assert Image.open(figures["reconstruction"]).size[1] == 8 * (32 * 2 + 2) + 2
    # Glimpses: 4 sequences × 2 slots rows of 6×6 glimpses at scale 3.
    assert Image.open(figures["glimpses"]).size[1] == 8 * (6 * 3 + 2) + 2
    # Generation: 4 inputs × (1 + 3 samples) rows; prior: 4 sample rows.
    assert Image.open(figures["generation"]).size[1] == 16 * (32 * 2 + 2) + 2
    assert Image.open(figures["prior_samples"]).size[1] == 4 * (32 * 2 + 2) + 2
    gif = Image.open(figures["generation_gif"])
    assert gif.n_frames == 5  # One GIF frame per time step.
    assert os.listdir(os.path.join(debug_run, "tensorboard", "eval"))

    # benchmarks/drawn_threshold_sweep.py scores the same refined particles from the same inference: its row at the
    # threshold in use is sqair-eval's.
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import drawn_threshold_sweep
    from sqair_tf import glimpse

    rows = drawn_threshold_sweep.sweep(model, config.data_dir, "test", 6, 4, (glimpse.EXPLAINED_THRESHOLD, 0.5),
                                       batch_size=10, refine_steps=2, chunk=2)
    for key in ("MOTA", "IDF1", "HOTA", "TP", "FP", "FN", "IDSW"):
        assert rows[glimpse.EXPLAINED_THRESHOLD][key] == t[key], key
    assert rows[0.5]["num_gt_dets"] == visible


def test_eval_errors_are_one_line(debug_run, tmp_path):
    missing = _eval("--workdir", str(tmp_path))
    assert missing.returncode == 2 and "sqair-eval: error:" in missing.stderr and "Traceback" not in missing.stderr
    bad_chunk = _eval("--workdir", debug_run, "--k", "5", "--chunk", "2", "--no-addition", "--no-progress")
    assert bad_chunk.returncode == 2 and "multiple of the chunk size" in bad_chunk.stderr
    bad_k = _eval("--workdir", debug_run, "--k", "0")
    assert bad_k.returncode == 2 and "--k must be an integer ≥ 1, got 0" in bad_k.stderr
    bad_refine = _eval("--workdir", debug_run, "--refine-steps", "-1")
    assert bad_refine.returncode == 2 and "--refine-steps must be an integer ≥ 0, got -1" in bad_refine.stderr
    for weight in ("-0.5", "nan"):
        bad_motion = _eval("--workdir", debug_run, "--refine-steps", "5", "--motion-weight", weight)
        assert bad_motion.returncode == 2 and f"--motion-weight must be a finite number ≥ 0, got {weight}" in (
            bad_motion.stderr)


def test_evaluation_args_are_the_command_lines_with_overrides():
    # The tools and benchmarks that evaluate in-process build their arguments here; they must be what
    # `sqair-eval --workdir W` parses, and a misspelt override must fail rather than be ignored.
    from evaluation import cli

    args = cli.evaluation_args("w", k=7, no_addition=True)
    parsed = cli._parser().parse_args(["--workdir", "w", "--k", "7", "--no-addition"])
    assert {**vars(parsed), "out": "w/eval", "tensorboard": "w/tensorboard/eval"} == vars(args)
    with pytest.raises(TypeError, match="no argument 'particles'"):
        cli.evaluation_args("w", particles=7)
