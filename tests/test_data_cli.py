"""The `sqair-data` console entry point, run as a user runs it: a subprocess of the installed script."""

import os
import subprocess
import sys

import pytest
from PIL import Image

SCRIPT = os.path.join(os.path.dirname(sys.executable), "sqair-data")


def run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli_data"))
    for split, num in (("train", 40), ("test", 12)):
        result = run("generate", "--out", out, "--split", split, "--num", str(num), "--seed", "1",
                     "--num-frames", "5", "--shard-size", "16")
        assert result.returncode == 0, result.stderr
        assert f"wrote {num} {split} sequences" in result.stdout
        assert "embedded" in result.stdout  # The digit source is reported.
    return out


def test_generate_preview_verify_end_to_end(data_dir, tmp_path):
    assert sorted(n for n in os.listdir(data_dir) if n.endswith(".json")) == ["test.json", "train.json"]
    png = str(tmp_path / "pictures" / "preview.png")
    result = run("preview", data_dir, "--out", png, "--num", "4", "--split", "test")
    assert result.returncode == 0, result.stderr
    image = Image.open(png)
    title_width = image.width - (5 * (50 * 3 + 2) + 2)
    assert image.height == 4 * (50 * 3 + 2) + 2 and title_width > 0
    assert image.mode == "RGB"
    result = run("verify", data_dir, "--split", "train")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 40 sequences in 3 shards")


@pytest.mark.parametrize("args,needle", [
    (["generate", "--num", "-3"], "--num"),
    (["generate", "--num", "4", "--canvas-size", "20"], "canvas_size"),
    (["generate", "--num", "4", "--count-probs", "0.5,0.2"], "count_probs"),
    (["generate", "--num", "4", "--num-frames", "0"], "num_frames"),
    (["generate", "--num", "4", "--digits", "/no/such/mnist.npz"], "/no/such/mnist.npz"),
])
def test_bad_generate_parameters_exit_nonzero_with_one_clear_line(tmp_path, args, needle):
    out = str(tmp_path / "out")
    result = run(args[0], "--out", out, *args[1:])
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(out) or not os.listdir(out)  # Nothing half-written.


def test_bad_data_directories(tmp_path, data_dir):
    result = run("preview", str(tmp_path / "missing"), "--out", str(tmp_path / "p.png"))
    assert result.returncode == 2 and "data directory not found" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run("verify", str(tmp_path / "empty"))
    assert result.returncode == 2 and "no 'train' split" in result.stderr
    assert not os.path.exists(tmp_path / "p.png")


def _flip_bytes(shard):
    with open(shard, "r+b") as f:
        f.seek(2000)
        f.write(b"\xff" * 64)  # Frame bytes are mostly 0: write something else. The size does not change.


def test_manifest_records_each_shards_checksum(data_dir):
    import json

    from data_pipelines import records

    manifest = json.load(open(os.path.join(data_dir, "train.json")))
    assert len(manifest["shards"]) == 3
    for shard in manifest["shards"]:
        assert shard["sha256"] == records.file_sha256(os.path.join(data_dir, shard["file"]))


def test_corrupt_shard_is_named_by_verify_with_and_without_checksums(tmp_path, data_dir):
    import json
    import shutil
    d = str(tmp_path / "d")
    shutil.copytree(data_dir, d)
    shard = os.path.join(d, "train-00001-of-00003.tfrecord")
    _flip_bytes(shard)
    result = run("verify", d, "--split", "train")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0  # One line.
    assert f"shard {shard} is corrupted" in result.stderr and f"sqair-data verify {d} --split train" in result.stderr

    # A manifest from before checksums: TFRecord's own record checksums find the shard.
    path = os.path.join(d, "train.json")
    manifest = json.load(open(path))
    for entry in manifest["shards"]:
        del entry["sha256"]
    json.dump(manifest, open(path, "w"))
    result = run("verify", d, "--split", "train")
    assert result.returncode == 2 and f"shard {shard} is corrupted" in result.stderr
