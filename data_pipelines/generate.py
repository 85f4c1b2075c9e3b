"""Writes a moving multi-MNIST split to sharded TFRecords, in parallel, deterministically.

Shard i is generated from `numpy.random.default_rng([seed, i])`, so the data depend only on (seed, digits, config,
shard_size) and not on the number of worker processes or on scheduling.
"""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time

import numpy as np

from data_pipelines import digits as digits_lib
from data_pipelines import moving_mnist
from data_pipelines import records
from data_pipelines.errors import DataError

DEFAULT_SHARD_SIZE = 2000

_WORKER_DIGITS = {}


def generate_split(out_dir, split, num_sequences, seed, config, digit_source=digits_lib.EMBEDDED,
                   allow_download=False, shard_size=DEFAULT_SHARD_SIZE, num_workers=None, progress=None):
    """Generates `num_sequences` sequences of `split` into `out_dir` and returns the manifest.

    Args:
      out_dir: directory to write (created if needed). An existing split there is replaced.
      split: 'train' or 'test' (selects the digits' split).
      num_sequences: ≥ 1.
      seed: integer ≥ 0.
      config: a `moving_mnist.MovingMnistConfig`.
      digit_source: 'embedded', 'keras' or a path to an `mnist.npz`.
      allow_download: let the 'keras' source download MNIST if the cache is empty.
      shard_size: sequences per TFRecord shard.
      num_workers: worker processes (default: all cores, at most the number of shards).
      progress: optional callable(num_sequences_done) called as shards complete.
    """
    if not isinstance(num_sequences, int) or num_sequences < 1:
        raise DataError(f"--num must be a positive number of sequences, got {num_sequences}")
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"--seed must be an integer ≥ 0, got {seed}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise DataError(f"--shard-size must be ≥ 1, got {shard_size}")
    digit_set = digits_lib.load_digits(digit_source, split, allow_download=allow_download)  # Fails early.
    if digit_set.sizes.max() > config.canvas_size:
        raise DataError(f"canvas_size={config.canvas_size} is smaller than a digit ({digit_set.sizes.max()} px)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output directory {out_dir}: {e}") from e
    records.remove_split(out_dir, split)

    num_shards = -(-num_sequences // shard_size)
    jobs = [(out_dir, split, i, num_shards, min(shard_size, num_sequences - i * shard_size), seed)
            for i in range(num_shards)]
    num_workers = max(1, min(num_workers or os.cpu_count() or 1, num_shards))
    start = time.time()
    shards = [None] * num_shards
    if num_workers == 1:
        _init_worker(digit_source, split, allow_download, config)
        results = (_write_one(job) for job in jobs)
        for i, shard in enumerate(results):
            shards[i] = shard
            if progress:
                progress(shard["num_sequences"])
    else:
        # 'spawn': the parent may already hold TensorFlow's threads, which do not survive a fork.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
                num_workers, mp_context=context, initializer=_init_worker,
                initargs=(digit_source, split, allow_download, config, True)) as pool:
            futures = {pool.submit(_write_one, job): job[2] for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                shards[futures[future]] = future.result()
                if progress:
                    progress(shards[futures[future]]["num_sequences"])
    manifest = {
        "schema_version": records.SCHEMA_VERSION,
        "split": split,
        "num_sequences": num_sequences,
        "seed": seed,
        "shard_size": shard_size,
        "num_frames": config.num_frames,
        "height": config.canvas_size,
        "width": config.canvas_size,
        "channels": 1,
        "num_slots": config.num_slots,
        "generator": dataclasses.asdict(config),
        "digits": digit_set.source,
        "num_digits": len(digit_set),
        # Per-pixel mean of all frames in [0, 1], [H][W]: initialises the model's learnable mean image (BUILD.md O2.4).
        "mean_frame": np.round(sum(s.pop("pixel_sum") for s in shards)
                               / (num_sequences * config.num_frames * 255.0), 6).tolist(),
        "generation_seconds": round(time.time() - start, 2),
        "shards": [{k: s[k] for k in ("file", "num_sequences", "bytes", "sha256")} for s in shards],
    }
    records.write_manifest(out_dir, split, manifest)
    return manifest


def _init_worker(digit_source, split, allow_download, config, quiet_stderr=False):
    if quiet_stderr:
        # TensorFlow's C++ start-up banner cannot be silenced by TF_CPP_MIN_LOG_LEVEL in 2.21; in a pool it would
        # print once per worker. Worker errors still reach the parent as exceptions.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    _WORKER_DIGITS["digits"] = digits_lib.load_digits(digit_source, split, allow_download=allow_download)
    _WORKER_DIGITS["config"] = config


def _write_one(job):
    out_dir, split, index, num_shards, count, seed = job
    rng = np.random.default_rng([seed, index])
    arrays = moving_mnist.generate_chunk(_WORKER_DIGITS["config"], _WORKER_DIGITS["digits"], count, rng)
    name = records.shard_name(split, index, num_shards)
    path = os.path.join(out_dir, name)
    size = records.write_shard(path, records.serialize_sequences(arrays))
    return {"file": name, "num_sequences": count, "bytes": size, "sha256": records.file_sha256(path),
            "pixel_sum": arrays["frames"].sum(axis=(0, 1), dtype=np.float64)}  # [H, W]
