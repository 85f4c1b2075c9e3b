"""On-disk format of a moving multi-MNIST split: sharded TFRecord files plus a JSON manifest.

Layout of a data directory (both splits may share one directory):

    DIR/train-00000-of-00030.tfrecord ... DIR/train.json
    DIR/test-00000-of-00005.tfrecord  ... DIR/test.json

The manifest `<split>.json` is written last and atomically. It lists every shard with its number of sequences, its
byte size and its SHA-256, so a reader can tell a complete split from an interrupted or truncated one before reading
a record (`read_manifest`), and a corrupted one (flipped bytes, same size) before training on it
(`verify_checksums`, about 1 s per GB); each shard is itself written under a temporary name and renamed only when
complete. Manifests written before checksums existed have none, and their shards are not checked.

Schema version 1: one `tf.train.Example` per sequence with these features (T frames, S digit slots, H×W canvas):

| key | type | shape | meaning |
|---|---|---|---|
| schema_version | int64 | [1] | 1 |
| frames | bytes | [1] | raw uint8 [T, H, W], batch-major, row-major |
| num_frames, height, width, num_slots | int64 | [1] each | T, H, W, S |
| labels | int64 | [S] | digit class per slot, −1 for an absent slot |
| object_ids | int64 | [S] | stable id per digit, −1 for an absent slot |
| count | int64 | [1] | digits in the sequence (the paper's counting target) |
| visible | int64 | [T·S] | 1 where the digit has a pixel on the canvas |
| visible_count | int64 | [T] | visible digits per frame |
| boxes | int64 | [T·S·4] | (y_min, x_min, y_max, x_max) of the drawn pixels, max exclusive, 0 if not visible |
| corners | float | [T·S·2] | unrounded (y, x) of the crop's top-left corner |
"""

import hashlib
import json
import os

import numpy as np

from data_pipelines.errors import DataError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
SPLITS = ("train", "test")


def shard_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def manifest_path(data_dir, split):
    return os.path.join(data_dir, f"{split}.json")


def serialize_sequences(arrays):
    """Turns the arrays of `moving_mnist.generate_chunk` into serialized `tf.train.Example` strings."""
    import tensorflow as tf  # Deferred: generation workers import TF only when they write.

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values).reshape(-1)))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values).reshape(-1)))

    frames = arrays["frames"]
    n, t_len, height, width = frames.shape
    num_slots = arrays["labels"].shape[1]
    out = []
    for i in range(n):
        feature = {
            "schema_version": ints([SCHEMA_VERSION]),
            "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frames[i].tobytes()])),
            "num_frames": ints([t_len]),
            "height": ints([height]),
            "width": ints([width]),
            "num_slots": ints([num_slots]),
            "labels": ints(arrays["labels"][i]),
            "object_ids": ints(arrays["object_ids"][i]),
            "count": ints([arrays["count"][i]]),
            "visible": ints(arrays["visible"][i]),
            "visible_count": ints(arrays["visible_count"][i]),
            "boxes": ints(arrays["boxes"][i]),
            "corners": floats(arrays["corners"][i]),
        }
        # deterministic=True sorts the feature map, so the same data give byte-identical shards in any process.
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True))
    return out


def write_shard(path, serialized):
    """Writes records to `path` atomically: a temporary file renamed into place only once complete."""
    import tensorflow as tf

    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in serialized:
                writer.write(record)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return os.path.getsize(path)


def write_manifest(data_dir, split, manifest):
    """Writes `<split>.json` atomically; the split counts as complete only once this file exists."""
    path = manifest_path(data_dir, split)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def remove_split(data_dir, split):
    """Removes a split's manifest first (so it stops looking complete), then its shards and leftovers."""
    path = manifest_path(data_dir, split)
    if os.path.exists(path):
        os.remove(path)
    for name in os.listdir(data_dir):
        if name.startswith(f"{split}-") and (name.endswith(".tfrecord") or ".tfrecord.tmp-" in name):
            os.remove(os.path.join(data_dir, name))


def file_sha256(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fails_checksum(shard, path):
    """True when the manifest entry `shard` has a checksum and the file at `path` no longer matches it."""
    return "sha256" in shard and file_sha256(path) != shard["sha256"]


def verify_checksums(manifest):
    """Raises DataError naming the first shard of a `read_manifest` result whose bytes differ from its checksum."""
    for shard, path in zip(manifest["shards"], manifest["shard_paths"]):
        if _fails_checksum(shard, path):
            raise DataError(corrupt_message(path, manifest))


def corrupt_message(path, manifest):
    """The one line a command prints for a corrupted shard."""
    data_dir, split = os.path.dirname(path), manifest["split"]
    return (f"shard {path} is corrupted (its bytes no longer match the checksum in {split}.json); check the split "
            f"with `sqair-data verify {data_dir} --split {split}` and generate it again")


def corrupt_shards(manifest):
    """Paths of a split's shards that fail their checksum or TFRecord's own record checksums (slow: reads all)."""
    import tensorflow as tf

    bad = []
    for shard, path in zip(manifest["shards"], manifest["shard_paths"]):
        if "sha256" in shard:
            if _fails_checksum(shard, path):
                bad.append(path)
            continue
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError:
            bad.append(path)
    return bad


def data_loss_error(manifest, error):
    """A DataError for a `tf.errors.DataLossError` met while reading the split of `manifest`, naming the shard."""
    bad = corrupt_shards(manifest)
    if bad:
        return DataError(corrupt_message(bad[0], manifest))
    first_line = str(getattr(error, "message", error)).strip().splitlines()[0]
    return DataError(f"the '{manifest['split']}' split in {os.path.dirname(manifest['shard_paths'][0])} has a "
                     f"corrupt record ({first_line}); generate it again")


def read_manifest(data_dir, split):
    """Reads and checks a split's manifest against the files on disk.

    Returns:
      The manifest dict, with `shard_paths` (absolute paths) added.

    Raises:
      DataError: missing directory or manifest, unknown schema version, missing or truncated shard.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if not os.path.isdir(data_dir):
        raise DataError(f"data directory not found: {data_dir}")
    path = manifest_path(data_dir, split)
    if not os.path.exists(path):
        shards = [n for n in os.listdir(data_dir) if n.startswith(f"{split}-")]
        hint = (" (shards are there but no manifest: was generation interrupted?)" if shards else
                f"; generate it with: sqair-data generate --out {data_dir} --split {split}")
        raise DataError(f"no '{split}' split in {data_dir}: {path} is missing{hint}")
    try:
        with open(path) as f:
            manifest = json.load(f)
        version = manifest["schema_version"]
        shards = manifest["shards"]
        shape = (manifest["num_frames"], manifest["height"], manifest["width"], manifest["num_slots"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"manifest {path} is malformed ({type(e).__name__}: {e})") from e
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise DataError(f"manifest {path} has schema version {version!r}; this sqair-tf reads versions "
                        f"{list(SUPPORTED_SCHEMA_VERSIONS)}")
    if not all(isinstance(v, int) and v > 0 for v in shape):
        raise DataError(f"manifest {path} has invalid shape fields {shape}")
    paths = []
    for shard in shards:
        shard_path = os.path.join(data_dir, shard["file"])
        if not os.path.exists(shard_path):
            raise DataError(f"shard listed in {path} is missing: {shard_path}")
        size = os.path.getsize(shard_path)
        if size != shard["bytes"]:
            raise DataError(f"shard {shard_path} has {size} bytes, the manifest says {shard['bytes']}: "
                            "it is truncated or was overwritten; generate the split again")
        paths.append(shard_path)
    if not paths or manifest.get("num_sequences", 0) <= 0:
        raise DataError(f"the '{split}' split in {data_dir} holds no sequences")
    manifest["shard_paths"] = paths
    return manifest
