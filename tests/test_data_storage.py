"""TFRecord storage, the tf.data builder, digit sources and every bad input of the data pipeline (issue 2)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import dataset
from data_pipelines import digits as digits_lib
from data_pipelines import generate
from data_pipelines import moving_mnist
from data_pipelines import records
from data_pipelines.errors import DataError

SMALL = moving_mnist.preset("paper", num_frames=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data"))
    generate.generate_split(out, "train", 50, seed=3, config=SMALL, shard_size=16, num_workers=1)
    generate.generate_split(out, "test", 20, seed=3, config=SMALL, shard_size=16, num_workers=1)
    return out


def _read(data_dir, split="train", **kwargs):
    config = dataset.DataConfig(data_dir=data_dir, split=split, shuffle=False, repeat=False, drop_remainder=False,
                                global_batch_size=kwargs.pop("batch", 64), **kwargs)
    ds, manifest = dataset.build_dataset(config)
    parts = [{k: v.numpy() for k, v in b.items()} for b in ds]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, manifest


def test_tfrecord_round_trip_matches_the_generator(data_dir):
    batch, manifest = _read(data_dir)
    digit_set = digits_lib.load_digits("embedded", "train")
    expected = [moving_mnist.generate_chunk(SMALL, digit_set, n, np.random.default_rng([3, i]))
                for i, n in enumerate((16, 16, 16, 2))]
    expected = {k: np.concatenate([e[k] for e in expected]) for k in expected[0]}
    assert manifest["num_sequences"] == 50 and len(manifest["shards"]) == 4
    assert batch["frames"].shape == (50, 4, 50, 50, 1) and batch["frames"].dtype == np.float32
    np.testing.assert_allclose(batch["frames"][..., 0], expected["frames"] / 255.0, rtol=0, atol=1e-7)
    assert 0.0 <= batch["frames"].min() and batch["frames"].max() <= 1.0
    for key in ("labels", "object_ids", "count", "visible", "visible_count", "boxes", "corners"):
        np.testing.assert_array_equal(batch[key], expected[key].astype(batch[key].dtype), err_msg=key)
    assert batch["boxes"].dtype == np.float32 and batch["labels"].dtype == np.int32


def test_manifest_records_provenance_and_mean_frame(data_dir):
    with open(os.path.join(data_dir, "train.json")) as f:
        manifest = json.load(f)
    assert manifest["schema_version"] == records.SCHEMA_VERSION
    assert manifest["seed"] == 3 and manifest["generator"]["num_frames"] == 4
    assert "embedded" in manifest["digits"]
    mean = np.asarray(manifest["mean_frame"])
    batch, _ = _read(data_dir)
    np.testing.assert_allclose(mean, batch["frames"].mean(axis=(0, 1))[..., 0], atol=2e-6)


def test_generation_is_deterministic_and_independent_of_workers(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    generate.generate_split(a, "test", 30, seed=5, config=SMALL, shard_size=10, num_workers=1)
    generate.generate_split(b, "test", 30, seed=5, config=SMALL, shard_size=10, num_workers=2)
    for name in sorted(os.listdir(a)):
        if name.endswith(".tfrecord"):
            with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
                assert fa.read() == fb.read(), name


def test_training_pipeline_batches_shuffles_and_repeats(data_dir):
    config = dataset.DataConfig(data_dir=data_dir, split="train", global_batch_size=8, seed=1)
    ds, _ = dataset.build_dataset(config)
    batches = list(ds.take(10))  # 80 > 50 sequences: repeats.
    assert all(b["frames"].shape == (8, 4, 50, 50, 1) for b in batches)
    assert ds.element_spec["frames"].shape.as_list() == [8, 4, 50, 50, 1]  # drop_remainder: static batch.
    first, _ = _read(data_dir)
    shuffled = np.concatenate([b["frames"].numpy() for b in batches[:6]])[:48]
    assert not np.array_equal(shuffled, first["frames"][:48])


def test_input_context_gives_each_replica_its_own_records(data_dir):
    seen = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        config = dataset.DataConfig(data_dir=data_dir, split="train", global_batch_size=8, shuffle=False,
                                    repeat=False, drop_remainder=False)
        ds, _ = dataset.build_dataset(config, input_context=ctx)
        frames = [b["frames"].numpy() for b in ds]
        assert frames[0].shape[0] == 4  # Per-replica batch = global / replicas.
        seen.append(np.concatenate(frames))
    assert len(seen[0]) + len(seen[1]) == 50
    flat = [s.reshape(len(s), -1) for s in seen]
    assert not any((flat[1] == row).all(axis=1).any() for row in flat[0] if row.any())


def test_digit_sources_embedded_split_keras_cache_and_path(tmp_path, monkeypatch):
    train, test = digits_lib.load_digits("embedded", "train"), digits_lib.load_digits("embedded", "test")
    assert (len(train), len(test)) == (9000, 1000)
    raw = np.load(digits_lib.embedded_digits_path())
    np.testing.assert_array_equal(test.labels, raw["labels"][9::10])
    assert np.all(train.sizes >= 1) and np.all(train.sizes <= 28)
    # Tight crops: the first and last row/column of every crop have ink.
    for tmpl, (h, w) in zip(train.templates[:200], train.sizes[:200]):
        crop = tmpl[:h, :w]
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
        assert not tmpl[h:].any() and not tmpl[:, w:].any()
        assert crop.max() == 255
    # A user's mnist.npz, read from a path and from the Keras cache (KERAS_HOME).
    rng = np.random.default_rng(0)
    fake = {k: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for k, n in (("x_train", 30), ("x_test", 12))}
    fake.update(y_train=rng.integers(0, 10, 30), y_test=rng.integers(0, 10, 12))
    os.makedirs(tmp_path / "keras" / "datasets")
    np.savez(tmp_path / "keras" / "datasets" / "mnist.npz", **fake)
    from_path = digits_lib.load_digits(str(tmp_path / "keras" / "datasets" / "mnist.npz"), "test")
    assert len(from_path) == 12 and "x_test" in from_path.source
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from_cache = digits_lib.load_digits("keras", "train")
    assert len(from_cache) == 30 and str(tmp_path) in from_cache.source
    np.testing.assert_array_equal(from_cache.labels, fake["y_train"])


def test_keras_source_without_cache_refuses_to_download_silently(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="--download"):
        digits_lib.load_digits("keras", "train")


@pytest.mark.parametrize("content,needle", [
    (None, "not found"),
    (b"this is not a zip file", "not a readable .npz"),
    ("wrong_keys", "lacks key"),
    ("wrong_shape", "shape"),
])
def test_bad_digits_files(tmp_path, content, needle):
    path = str(tmp_path / "mnist.npz")
    if content == "wrong_keys":
        np.savez(path, images=np.zeros((3, 28, 28), np.uint8))
    elif content == "wrong_shape":
        np.savez(path, x_train=np.ones((3, 20, 20), np.uint8), y_train=np.zeros(3, np.int64))
    elif content is not None:
        with open(path, "wb") as f:
            f.write(content)
    with pytest.raises(DataError, match=needle) as info:
        digits_lib.load_digits(path, "train")
    assert path in str(info.value)


def _copy_split(src, dst, split="train"):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_missing_directory_and_missing_split(tmp_path, data_dir):
    with pytest.raises(DataError, match="data directory not found"):
        records.read_manifest(str(tmp_path / "nope"), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no 'train' split"):
        records.read_manifest(str(empty), "train")


def test_interrupted_generation_is_not_mistaken_for_a_split(tmp_path, data_dir):
    d = _copy_split(data_dir, str(tmp_path / "d"))
    os.remove(os.path.join(d, "train.json"))  # What an interruption before the manifest leaves behind.
    with pytest.raises(DataError, match="interrupted"):
        records.read_manifest(d, "train")


def test_truncated_shard_is_detected_before_reading(tmp_path, data_dir):
    d = _copy_split(data_dir, str(tmp_path / "d"))
    shard = os.path.join(d, records.shard_name("train", 1, 4))
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    with pytest.raises(DataError, match="truncated") as info:
        dataset.build_dataset(dataset.DataConfig(data_dir=d))
    assert shard in str(info.value)


def test_unknown_schema_version_is_refused(tmp_path, data_dir):
    d = _copy_split(data_dir, str(tmp_path / "d"))
    path = os.path.join(d, "train.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest["schema_version"] = 99
    with open(path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(DataError, match="schema version 99"):
        records.read_manifest(d, "train")
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(DataError, match="malformed"):
        records.read_manifest(d, "train")


def test_corrupt_record_fails_reading(tmp_path, data_dir):
    d = _copy_split(data_dir, str(tmp_path / "d"))
    shard = os.path.join(d, records.shard_name("train", 0, 4))
    with open(shard, "r+b") as f:  # Flip bytes inside the first record's payload: same size, bad checksum.
        f.seek(1000)
        f.write(b"\xff" * 16)
    with pytest.raises(tf.errors.DataLossError):
        _read(d)


def test_impossible_generation_parameters(tmp_path):
    with pytest.raises(DataError, match="--num"):
        generate.generate_split(str(tmp_path), "train", -5, seed=0, config=SMALL)
    with pytest.raises(DataError, match="--seed"):
        generate.generate_split(str(tmp_path), "train", 5, seed=-1, config=SMALL)
    assert not os.listdir(tmp_path)  # Refused before writing anything.
