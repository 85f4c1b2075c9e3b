"""tf.data input pipeline for moving multi-MNIST TFRecords (schema in `records.py`).

Batches are batch-major dicts (the model transposes to time-major once, at its boundary):

    frames         float32 [B, T, H, W, 1] in [0, 1]
    labels         int32   [B, S]      (−1 for an absent slot)
    object_ids     int32   [B, S]      (−1 for an absent slot)
    count          int32   [B]
    visible        int32   [B, T, S]
    visible_count  int32   [B, T]
    boxes          float32 [B, T, S, 4] (y_min, x_min, y_max, x_max) in pixels
    corners        float32 [B, T, S, 2]

The curriculum on sequence length is the trainer's business (it slices `frames[:, :L]` between loops); nothing here
depends on the training step.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from data_pipelines import records
from data_pipelines.errors import DataError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data are and how to batch them.

    Attributes:
      data_dir: directory written by `sqair-data generate`.
      split: 'train' or 'test'.
      global_batch_size: sequences per step over all replicas (per-replica size = global / replicas).
      shuffle: shuffle shard order and records (training); off for deterministic evaluation.
      shuffle_buffer: records held by the shuffle buffer.
      repeat: loop forever (training) or read the split once (evaluation).
      drop_remainder: keep batch shapes static (needed for jit and for strategies); evaluation may turn it off.
      seed: shuffling seed (None: nondeterministic).
    """

    data_dir: str
    split: str = "train"
    global_batch_size: int = 32
    shuffle: bool = True
    shuffle_buffer: int = 10_000
    repeat: bool = True
    drop_remainder: bool = True
    seed: Optional[int] = None

    def __post_init__(self):
        if self.global_batch_size < 1:
            raise DataError(f"global_batch_size must be ≥ 1, got {self.global_batch_size}")
        if self.shuffle_buffer < 1:
            raise DataError(f"shuffle_buffer must be ≥ 1, got {self.shuffle_buffer}")


def feature_spec(num_frames, num_slots):
    """The `tf.io.parse_example` spec of schema version 1."""
    t, s = num_frames, num_slots
    fixed = tf.io.FixedLenFeature
    return {
        "schema_version": fixed([1], tf.int64),
        "frames": fixed([], tf.string),
        "labels": fixed([s], tf.int64),
        "object_ids": fixed([s], tf.int64),
        "count": fixed([1], tf.int64),
        "visible": fixed([t * s], tf.int64),
        "visible_count": fixed([t], tf.int64),
        "boxes": fixed([t * s * 4], tf.int64),
        "corners": fixed([t * s * 2], tf.float32),
    }


def make_parser(manifest):
    """A function from a batch of serialized examples [B] to the documented dict of tensors."""
    t, h, w, s = (manifest[k] for k in ("num_frames", "height", "width", "num_slots"))
    spec = feature_spec(t, s)

    def parse(serialized):
        ex = tf.io.parse_example(serialized, spec)
        version_ok = tf.reduce_all(tf.equal(ex["schema_version"], records.SCHEMA_VERSION))
        with tf.control_dependencies([tf.debugging.Assert(version_ok, ["record schema version differs from the "
                                                                       "manifest's", ex["schema_version"]])]):
            frames = tf.io.decode_raw(ex["frames"], tf.uint8, fixed_length=t * h * w)  # [B, T·H·W]
        frames = tf.reshape(frames, [-1, t, h, w, 1])  # [B, T, H, W, 1]
        return {
            "frames": tf.cast(frames, tf.float32) / 255.0,
            "labels": tf.cast(ex["labels"], tf.int32),  # [B, S]
            "object_ids": tf.cast(ex["object_ids"], tf.int32),  # [B, S]
            "count": tf.cast(ex["count"][:, 0], tf.int32),  # [B]
            "visible": tf.reshape(tf.cast(ex["visible"], tf.int32), [-1, t, s]),  # [B, T, S]
            "visible_count": tf.cast(ex["visible_count"], tf.int32),  # [B, T]
            "boxes": tf.reshape(tf.cast(ex["boxes"], tf.float32), [-1, t, s, 4]),  # [B, T, S, 4]
            "corners": tf.reshape(ex["corners"], [-1, t, s, 2]),  # [B, T, S, 2]
        }

    return parse


def checked_batches(ds, manifest):
    """Iterates `ds` (a dataset of the split of `manifest`), turning a corrupted record met on the way (TFRecord's
    own checksum, `tf.errors.DataLossError`) into one DataError that names the shard (`records.data_loss_error`)."""
    iterator = iter(ds)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.DataLossError as e:
            raise records.data_loss_error(manifest, e) from None
        yield batch


def build_dataset(config, input_context=None, skip_batches=0):
    """Builds the batched dataset of `config.split`.

    With a seed, the order of batches is a deterministic function of (data, seed, number of pipelines), so a
    resumed training run can continue the exact sequence of batches: `skip_batches` drops the first batches
    cheaply (raw serialized records are skipped before parsing).

    Args:
      config: a `DataConfig`.
      input_context: a `tf.distribute.InputContext` (from `distribute_datasets_from_function`): this pipeline then
        reads its own subset of shards (or of records, with fewer shards than pipelines) and batches with the
        per-replica batch size.
      skip_batches: batches of this pipeline to drop from the start (resume).

    Returns:
      (dataset, manifest): a `tf.data.Dataset` of dicts (module docstring) and the split's manifest.

    Raises:
      DataError: the split is missing, incomplete, or of an unknown schema (see `records.read_manifest`).
    """
    manifest = records.read_manifest(config.data_dir, config.split)
    batch_size = config.global_batch_size
    files = tf.data.Dataset.from_tensor_slices(manifest["shard_paths"])
    shard_records = False
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(config.global_batch_size)
        if len(manifest["shard_paths"]) >= input_context.num_input_pipelines:
            files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            shard_records = True
    if config.shuffle:
        files = files.shuffle(len(manifest["shard_paths"]), seed=config.seed, reshuffle_each_iteration=True)
    ds = files.interleave(tf.data.TFRecordDataset, cycle_length=4, block_length=16,
                          num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=not config.shuffle or config.seed is not None)
    if shard_records:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if config.shuffle:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    if config.repeat:
        ds = ds.repeat()
    if skip_batches:
        ds = ds.skip(int(skip_batches) * batch_size)
    ds = ds.batch(batch_size, drop_remainder=config.drop_remainder)
    ds = ds.map(make_parser(manifest), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), manifest
