"""MNIST digit sources and the tight-crop templates the moving multi-MNIST generator pastes.

Three sources, chosen by the user and always reported back (`DigitSet.source`):

* ``embedded``: 10,000 real MNIST digits shipped with this package (``assets/mnist_digits_10k.npz``, provenance in
  ``assets/PROVENANCE.md``). Fixed split: digit index i is a *test* digit when ``i % 10 == 9`` (1,000 digits), otherwise
  a *train* digit (9,000).
* ``keras``: the standard ``mnist.npz`` in the Keras cache (``~/.keras/datasets/mnist.npz``, what
  ``keras.datasets.mnist.load_data()`` fills). Downloaded only when the caller passes ``allow_download=True``.
* a path to a ``mnist.npz`` file (keys ``x_train, y_train, x_test, y_test``).

For full MNIST the train split uses the 60k MNIST training images and the test split the 10k MNIST test images, as
the paper says ("created from the respective MNIST datasets"). The original code instead built its held-out set from
TF1's 5k MNIST-validation digits (BUILD.md O1.1); that reader no longer exists and the paper's wording is the contract.

Preprocessing follows BUILD.md O1.1: each image is byte-scaled so its minimum maps to 0 and its maximum to 255 (what
``scipy.misc.imresize`` did to a same-size image), then cropped to the tight bounding box of its non-zero pixels.
"""

import dataclasses
import os
from importlib import resources

import numpy as np

from data_pipelines.errors import DataError

EMBEDDED = "embedded"
KERAS = "keras"
SPLITS = ("train", "test")
DIGIT_SIDE = 28


@dataclasses.dataclass(frozen=True)
class DigitSet:
    """Tight-cropped digit templates of one split.

    Attributes:
      templates: uint8 [M, 28, 28]; each digit's tight crop pasted at the top-left corner, zeros elsewhere.
      sizes: int32 [M, 2]; (height, width) of each tight crop, both in [1, 28].
      labels: int32 [M]; digit classes 0..9.
      source: human-readable description of where the digits came from (reported by the CLI and stored in the
        dataset metadata).
    """

    templates: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self):
        return len(self.labels)


def embedded_digits_path():
    """Path of the packaged 10k-digit file."""
    return str(resources.files("data_pipelines").joinpath("assets").joinpath("mnist_digits_10k.npz"))


def keras_cache_path():
    """Where ``keras.datasets.mnist.load_data()`` caches ``mnist.npz`` (honours ``KERAS_HOME``)."""
    base = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(base, "datasets", "mnist.npz")


def load_digits(source, split, allow_download=False):
    """Loads one split of digits from ``source`` ('embedded', 'keras' or a path) as tight-crop templates.

    Raises:
      DataError: unknown split, missing or malformed file, or a Keras cache that is absent without download consent.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    if source == EMBEDDED:
        path = embedded_digits_path()
        images, labels = _read_npz(path, ("images", "labels"))
        index = np.arange(len(images))
        is_test = index % 10 == 9
        keep = is_test if split == "test" else ~is_test
        images, labels = images[keep], labels[keep]
        description = f"embedded 10k MNIST subset ({path}), {split} split (i % 10 == 9 is test)"
    else:
        if source == KERAS:
            path = keras_cache_path()
            if not os.path.exists(path):
                if not allow_download:
                    raise DataError(
                        f"digits 'keras': no MNIST in the Keras cache at {path}; pass --download to fetch it with "
                        "keras.datasets.mnist.load_data(), or use --digits embedded or --digits PATH")
                path = _download_keras_mnist()
        else:
            path = source
        x_key, y_key = ("x_train", "y_train") if split == "train" else ("x_test", "y_test")
        images, labels = _read_npz(path, (x_key, y_key))
        description = f"MNIST npz ({path}), {x_key}"
    _check_images(images, labels, path)
    templates, sizes = tight_crops(images)
    return DigitSet(templates=templates, sizes=sizes, labels=labels.astype(np.int32), source=description)


def tight_crops(images):
    """Byte-scales each image to 0..255 and moves its tight crop to the top-left corner.

    Args:
      images: uint8 or float [M, 28, 28].

    Returns:
      templates uint8 [M, 28, 28] and sizes int32 [M, 2] (height, width of the tight crop).
    """
    x = images.astype(np.float64)
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    x = np.round((x - lo) * (255.0 / np.maximum(hi - lo, 1e-12))).astype(np.uint8)
    rows = x.any(axis=2)  # [M, 28]
    cols = x.any(axis=1)  # [M, 28]
    y0 = rows.argmax(axis=1)
    x0 = cols.argmax(axis=1)
    y1 = DIGIT_SIDE - rows[:, ::-1].argmax(axis=1)
    x1 = DIGIT_SIDE - cols[:, ::-1].argmax(axis=1)
    templates = np.zeros_like(x)
    for i in range(len(x)):  # 70k small slices: about 0.1 s, once per run.
        h, w = y1[i] - y0[i], x1[i] - x0[i]
        templates[i, :h, :w] = x[i, y0[i]:y1[i], x0[i]:x1[i]]
    sizes = np.stack([y1 - y0, x1 - x0], axis=1).astype(np.int32)
    return templates, sizes


def _read_npz(path, keys):
    if not os.path.exists(path):
        raise DataError(f"digits file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DataError(f"digits file {path} lacks key(s) {missing}; it has {sorted(data.files)}")
            return tuple(np.asarray(data[k]) for k in keys)
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError...
        raise DataError(f"digits file {path} is not a readable .npz file ({type(e).__name__}: {e})") from e


def _check_images(images, labels, path):
    if images.ndim != 3 or images.shape[1:] != (DIGIT_SIDE, DIGIT_SIDE):
        raise DataError(f"digits file {path}: images must have shape [M, 28, 28], got {list(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"digits file {path}: labels must have shape [{images.shape[0]}], got {list(labels.shape)}")
    if len(images) == 0:
        raise DataError(f"digits file {path}: no images")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"digits file {path}: labels must be digit classes 0..9")
    flat = images.reshape(len(images), -1)
    if not np.all(flat.max(axis=1) > flat.min(axis=1)):
        raise DataError(f"digits file {path}: contains blank (constant) images")


def _download_keras_mnist():
    """Fetches MNIST into the Keras cache; only called when the user asked for it explicitly."""
    import keras  # Imported here: the generator itself must not need TensorFlow.

    try:
        keras.datasets.mnist.load_data()
    except Exception as e:
        raise DataError(f"could not download MNIST with keras.datasets.mnist.load_data(): {e}") from e
    return keras_cache_path()
