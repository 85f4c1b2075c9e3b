"""What a run directory's TensorBoard log says about its past: its logged scalars, and how long its training took to
reach each step."""

import glob
import os

# Train-writer scalar of a run started from another's weights (`sqair-train --init-from`): the step it began at.
INIT_STEP_TAG = "init_from_step"


def scalars(workdir, writer, tag):
    """{step: value} of the scalar `tag` in WORKDIR/tensorboard/WRITER (writer "train" or "eval").

    A step logged twice (a run resumed from an earlier checkpoint) keeps its later value.
    """
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    values = {}
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", writer, "events*"))):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return values


def training_minutes(workdir):
    """{step: minutes of training loops up to that step}, from WORKDIR/tensorboard/train's `steps_per_sec`.

    Each logged loop of n steps at r steps/s took n / r seconds: compilation after every (re)start is included,
    periodic evaluations and checkpoints are not. They are the machine's minutes, shared with whatever else ran.
    A run started from another's weights (`sqair-train --init-from`) counts from the step it started at, which
    its log records; the source's own minutes are not included.
    """
    rate = scalars(workdir, "train", "steps_per_sec")
    start = scalars(workdir, "train", INIT_STEP_TAG)
    minutes, total, previous = {}, 0.0, int(min(start.values())) if start else 0
    for step in sorted(rate):
        total += (step - previous) / rate[step] / 60
        minutes[step], previous = total, step
    return minutes
