"""The book's datasets, by their TensorFlow Datasets names, with the book's preprocessing.

In smoke mode (see :mod:`common.config`) every loader works offline: TFDS datasets come
from ``tfds.testing.mock_data`` (random examples of the right shapes and dtypes) and the
demo uses scikit-learn's bundled 8x8 digits. In a full run a dataset that cannot be
downloaded stops with :class:`DatasetUnavailableError`, whose message is one sentence
naming the dataset and what to do, instead of a long stack trace from inside TFDS.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from . import config

__all__ = [
    "AUTOTUNE",
    "CELEBA_ATTRIBUTES",
    "DatasetUnavailableError",
    "binarize",
    "load",
    "pipeline",
    "load_mnist_binary",
    "load_celeba_images",
    "load_digits_binary",
]

AUTOTUNE = tf.data.AUTOTUNE

#: The 40 CelebA attributes in TFDS order (alphabetical). "Female" is ``Male == False``.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()

# Where each dataset's files come from, probed before a download so that an offline run
# fails in seconds rather than after minutes of retries.
_DOWNLOAD_HOST = {"celeb_a": "drive.google.com"}
_DEFAULT_HOST = "storage.googleapis.com"

_CELEBA_FILES = (
    "img_align_celeba.zip, list_eval_partition.txt, list_attr_celeba.txt, "
    "list_landmarks_align_celeba.txt and identity_CelebA.txt"
)


class DatasetUnavailableError(RuntimeError):
    """A full run could not download or find a dataset; the message says what to do."""


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def _can_reach(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """True when a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable_message(name: str, data_dir: Path, reason: str) -> str:
    manual = data_dir / "downloads" / "manual"
    if name == "celeb_a":
        how = (
            f"Google Drive often refuses CelebA downloads when its daily quota is used up, so "
            f"download {_CELEBA_FILES} from the CelebA website by hand, put them in {manual} "
            f"and run again"
        )
    else:
        how = f"connect to the internet and run again, or copy a prepared copy of '{name}' into {data_dir}"
    return f"Could not get the TFDS dataset '{name}' ({reason}): {how}."


def _ensure_prepared(builder, name: str, data_dir: Path) -> None:
    if builder.is_prepared():
        return
    manual = data_dir / "downloads" / "manual"
    has_manual_files = manual.is_dir() and any(manual.iterdir())
    host = _DOWNLOAD_HOST.get(name, _DEFAULT_HOST)
    if not has_manual_files and not _can_reach(host):
        raise DatasetUnavailableError(
            _unavailable_message(name, data_dir, f"no network connection to {host}")
        )
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
        )
    except Exception as err:  # any failure of the download: quota, checksum, network
        raise DatasetUnavailableError(
            _unavailable_message(name, data_dir, f"{type(err).__name__} while downloading")
        ) from err


def load(
    name: str,
    split: str,
    *,
    as_supervised: bool = False,
    shuffle_files: bool = False,
    smoke_examples: int = 64,
    data_dir: str | os.PathLike | None = None,
):
    """Return ``(dataset, info)`` for a TFDS dataset split.

    Smoke mode: ``smoke_examples`` random examples from ``tfds.testing.mock_data``, no
    network. Note that the mock's ``info.splits`` is empty: read sizes from
    ``dataset.cardinality()``, never from ``info``.
    Full run: downloads on first use (into ``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)
    and raises :class:`DatasetUnavailableError` when that is impossible.
    """
    if config.is_smoke():
        with tfds.testing.mock_data(
            num_examples=smoke_examples, policy=tfds.testing.MockPolicy.USE_CODE
        ):
            return tfds.load(
                name,
                split=split,
                as_supervised=as_supervised,
                shuffle_files=shuffle_files,
                with_info=True,
            )
    root = _data_dir(data_dir)
    builder = tfds.builder(name, data_dir=str(root))
    _ensure_prepared(builder, name, root)
    ds = builder.as_dataset(split=split, as_supervised=as_supervised, shuffle_files=shuffle_files)
    return ds, builder.info


def pipeline(ds: tf.data.Dataset, batch_size: int, *, shuffle: int | None = None,
             cache: bool = True, drop_remainder: bool = False, seed: int | None = None):
    """cache -> shuffle(buffer ``shuffle``) -> batch -> prefetch: the input pipeline every
    chapter uses. Map the preprocessing before calling this so the cache holds its result."""
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def binarize(image, label=None):
    """Book Chapter 1 preprocessing: grey levels 0..127 -> 0 and 128..255 -> 1.

    Returns ``(input, target)``: the input as float32 0.0/1.0 for the network and the same
    image as int32 0/1 as the training target. The label, if given, is dropped.
    """
    bits = tf.cast(image, tf.int32) >= 128
    return tf.cast(bits, tf.float32), tf.cast(bits, tf.int32)


def load_mnist_binary(batch_size: int = 64, *, smoke_examples: int = 128, data_dir=None):
    """Binarised MNIST for PixelCNN: ``(train, test)`` datasets of (float32 input, int32
    target) batches of shape ``(B, 28, 28, 1)``. Train is shuffled over all of it."""
    out = []
    for split in ("train", "test"):
        ds, _ = load("mnist", split, as_supervised=True, smoke_examples=smoke_examples,
                     data_dir=data_dir)
        ds = ds.map(binarize, num_parallel_calls=AUTOTUNE)
        shuffle = 60_000 if split == "train" else None
        out.append(pipeline(ds, batch_size, shuffle=shuffle))
    return tuple(out)


def load_celeba_images(split: str = "test", n: int = 2000, batch: int = 2000, *, data_dir=None):
    """The first ``n`` CelebA images of ``split`` in TFDS order, with their attributes.

    Returns ``(images, attributes)``: a uint8 array ``(n, 218, 178, 3)`` and a dict mapping
    each of the 40 attribute names to a bool array of length ``n``. In smoke mode the images
    are random (mock data) but have the real shapes and keys.
    """
    ds, _ = load("celeb_a", split, shuffle_files=False, smoke_examples=n, data_dir=data_dir)
    ds = ds.map(lambda ex: (ex["image"], ex["attributes"]), num_parallel_calls=AUTOTUNE)
    images, attributes = [], {name: [] for name in CELEBA_ATTRIBUTES}
    for image_batch, attr_batch in ds.take(n).batch(batch).prefetch(1).as_numpy_iterator():
        images.append(image_batch)
        for key in attributes:
            attributes[key].append(np.asarray(attr_batch[key], dtype=bool))
    if not images:
        raise DatasetUnavailableError(f"CelebA split '{split}' yielded no images.")
    return (
        np.concatenate(images).astype(np.uint8),
        {key: np.concatenate(value) for key, value in attributes.items()},
    )


def load_digits_binary(test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 real handwritten 8x8 digits (shipped with the package, so no
    network), binarised at half of their 0..16 range. Returns ``(x_train, x_test)`` float32
    arrays of shape ``(N, 8, 8, 1)`` with values 0.0/1.0, split with a fixed seed."""
    from sklearn.datasets import load_digits

    images = load_digits().images  # (1797, 8, 8) floats 0..16
    bits = (images >= 8).astype(np.float32)[..., None]
    order = np.random.default_rng(seed).permutation(len(bits))
    n_test = int(round(test_fraction * len(bits)))
    return bits[order[n_test:]], bits[order[:n_test]]
