"""Evaluation of a model over a whole data split: per-sequence metrics averaged over sequences.

`evaluate_split` streams a split in batches, runs K particles per sequence and averages the training metrics of
`trainers.trainer.sequence_statistics` (IWAE and ELBO per sequence; the rest per frame, importance-weighted) and
the per-frame counting accuracy against the visible-digit count.
"""

import sys
import time

import numpy as np
import tensorflow as tf

from data_pipelines import dataset as dataset_lib
from sqair_tf import metrics as metrics_lib
from sqair_tf import model as model_lib


def evaluate_split(model, data_dir, split="test", num_sequences=1000, num_particles=5, seed=0, batch_size=50,
                   progress=False):
    """Averages of the per-sequence metrics over the first `num_sequences` sequences of `split`.

    Returns a dict: every key of `trainer.sequence_statistics`, `visible_counting_accuracy` (per-frame count of
    visible digits as the target), `num_sequences` and `seconds`.
    """
    from trainers.trainer import sequence_statistics  # Shared definition of the metrics.

    config = dataset_lib.DataConfig(data_dir=data_dir, split=split, global_batch_size=batch_size, shuffle=False,
                                    repeat=False, drop_remainder=False)
    ds, manifest = dataset_lib.build_dataset(config)
    num_sequences = min(num_sequences, manifest["num_sequences"])
    ds = ds.unbatch().take(num_sequences).batch(batch_size)

    @tf.function
    def run(frames, count, visible_count, seed):
        outputs = model(frames, seed=seed, num_particles=num_particles)
        stats = sequence_statistics(outputs, num_particles, count)
        log_weights = model_lib.sequence_log_weights(outputs, num_particles)
        stats["visible_counting_accuracy"] = metrics_lib.counting_accuracy(
            outputs["num_objects"], visible_count, log_weights)
        return {key: tf.reduce_sum(value) for key, value in stats.items()}

    start = time.perf_counter()
    totals, seen = {}, 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_sequences, unit="seq", desc=f"eval {split}", file=sys.stderr)
    for i, batch in enumerate(ds):
        sums = run(batch["frames"], batch["count"], batch["visible_count"], tf.constant([seed, i], tf.int32))
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        n = int(batch["frames"].shape[0])
        seen += n
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    result = {key: value / max(seen, 1) for key, value in totals.items()}
    result.update(num_sequences=seen, seconds=time.perf_counter() - start)
    return result
