"""What a run directory's TensorBoard log says about its past: how long its training took to reach each step."""

import glob
import os


def training_minutes(workdir):
    """{step: minutes of training loops up to that step}, from WORKDIR/tensorboard/train's `steps_per_sec`.

    Each logged loop of n steps at r steps/s took n / r seconds: compilation after every (re)start is included,
    periodic evaluations and checkpoints are not. They are the machine's minutes, shared with whatever else ran.
    A step logged twice (a run resumed from an earlier checkpoint) keeps its later value.
    """
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    rate = {}
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "train", "events*"))):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "steps_per_sec":
                    rate[event.step] = float(tf.make_ndarray(value.tensor))
    minutes, total, previous = {}, 0.0, 0
    for step in sorted(rate):
        total += (step - previous) / rate[step] / 60
        minutes[step], previous = total, step
    return minutes
