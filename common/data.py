"""The book's datasets, by their TensorFlow Datasets names, with the book's preprocessing.

In smoke mode (see :mod:`common.config`) every loader works offline: TFDS datasets come
from ``tfds.testing.mock_data`` (random examples of the right shapes and dtypes) and the
demo uses scikit-learn's bundled 8x8 digits. In a full run a dataset that cannot be
downloaded stops with :class:`DatasetUnavailableError`, whose message is one sentence
naming the dataset and what to do, instead of a long stack trace from inside TFDS.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import socket
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from . import config

__all__ = ["AUTOTUNE", "CACHE_BYTES", "CELEBA_ATTRIBUTES", "DatasetUnavailableError", "check_split", "binarize", "load",
           "pipeline", "load_mnist_binary", "load_celeba_images", "load_digits_binary", "sample_image",
           "celeba_faces", "CIFAR10_CLASSES", "cifar10_dataset"]

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


def _unavailable_message(name: str, data_dir: Path, reason: str, missing=()) -> str:
    manual = data_dir / "downloads" / "manual"
    if name == "celeb_a":
        how = (f"download {', '.join(sorted(missing))} from the CelebA website by hand (Google Drive "
               f"refuses them once its daily quota is used up), put them in {manual} and run again")
    else:
        how = f"connect to the internet and run again, or copy a prepared copy of '{name}' into {data_dir}"
    return f"Could not get the TFDS dataset '{name}' ({reason}): {how}."


def _ensure_prepared(builder, name: str, data_dir: Path) -> None:
    """Download and prepare, or fail in seconds when offline: the files TFDS would take from
    ``downloads/manual`` instead of the network are checked by name first."""
    if builder.is_prepared():
        return
    manual = data_dir / "downloads" / "manual"
    expected = {info.filename for info in (builder.url_infos or {}).values() if info.filename}
    found = {p.name for p in manual.iterdir()} if manual.is_dir() else set()
    host = _DOWNLOAD_HOST.get(name, _DEFAULT_HOST)
    if not (expected and expected <= found) and not _can_reach(host):
        extra = sorted(found - expected)
        seen = (f"; {manual} lacks {sorted(expected - found)} and holds {extra or 'no other file'}"
                if found else "")
        raise DatasetUnavailableError(_unavailable_message(
            name, data_dir, f"no network connection to {host}{seen}", expected - found or expected))
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    except Exception as err:  # any failure of the download: quota, checksum, network
        raise DatasetUnavailableError(_unavailable_message(
            name, data_dir, f"{type(err).__name__} while downloading", expected - found or expected)) from err


def _declared_splits(name: str) -> set:
    """The split names a TFDS builder's code declares, read from the source of its
    ``_split_generators`` (``SplitGenerator(name=...)`` or the keys of the dict it returns)
    without running it or downloading anything; empty when they cannot be read that way."""
    try:
        code = ast.parse(textwrap.dedent(inspect.getsource(
            tfds.builder_cls(re.split(r"[/:]", name)[0])._split_generators)))
    except Exception:  # an unknown dataset (TFDS says so later) or a builder without source
        return set()
    nodes = [kw.value for n in ast.walk(code) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", getattr(n.func, "id", None)) == "SplitGenerator"
             for kw in n.keywords if kw.arg == "name"]
    nodes += [k for n in ast.walk(code) if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)
              for k in n.value.keys]
    return {n.value if isinstance(n, ast.Constant) else n.attr.lower() for n in nodes
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            or isinstance(n, ast.Attribute) and n.attr in ("TRAIN", "VALIDATION", "TEST")}


def check_split(name: str, split: str, builder=None) -> None:
    """Raise ValueError when ``split`` (``'train'``, ``'train[:10%]+test'``...) names a split the
    TFDS dataset ``name`` does not have: the prepared ``builder``'s splits, else those its code
    declares. The same check runs in smoke mode, so a typo fails in CI, not after a download."""
    known = set(builder.info.splits) if builder is not None and builder.info.splits else _declared_splits(name)
    unknown = sorted({part.split("[")[0].strip() for part in str(split).split("+")} - known - {"all"})
    if known and unknown:
        raise ValueError(f"split={split!r}: the TFDS dataset '{name}' has no split {unknown[0]!r}; "
                         f"choose from {sorted(known)}")


#: Examples per split of the TFDS datasets the notebooks read (TFDS catalog); a dry run mocks as many.
FULL_SPLIT_SIZES = {
    "mnist:train": 60_000, "mnist:test": 10_000, "fashion_mnist:train": 60_000,
    "fashion_mnist:test": 10_000, "cifar10:train": 50_000, "cifar10:test": 10_000,
    "celeb_a:train": 162_770, "celeb_a:validation": 19_867, "celeb_a:test": 19_962,
    "cycle_gan/horse2zebra:trainA": 1_067, "cycle_gan/horse2zebra:trainB": 1_334,
    "cycle_gan/horse2zebra:testA": 120, "cycle_gan/horse2zebra:testB": 140,
}


def load(name: str, split: str, *, as_supervised: bool = False, shuffle_files: bool = False,
         smoke_examples: int = 64, data_dir: str | os.PathLike | None = None):
    """Return ``(dataset, info)`` for a TFDS dataset split.

    Smoke mode: ``smoke_examples`` random examples from ``tfds.testing.mock_data``, no
    network. Note that the mock's ``info.splits`` is empty: read sizes from
    ``dataset.cardinality()``, never from ``info``.
    Full run: downloads on first use (into ``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)
    and raises :class:`DatasetUnavailableError` when that is impossible. In both modes an
    unknown split name or a split with no examples raises ValueError.
    """
    if config.is_smoke():
        check_split(name, split)
        if config.is_dry():  # the real number of examples, so epochs have the full run's length
            smoke_examples = FULL_SPLIT_SIZES.get(f"{name}:{split}", smoke_examples)
        with tfds.testing.mock_data(num_examples=smoke_examples, policy=tfds.testing.MockPolicy.USE_CODE):
            ds, info = tfds.load(name, split=split, as_supervised=as_supervised,
                                 shuffle_files=shuffle_files, with_info=True)
    else:
        root = _data_dir(data_dir)
        builder = tfds.builder(name, data_dir=str(root))
        check_split(name, split, builder)
        _ensure_prepared(builder, name, root)
        ds = builder.as_dataset(split=split, as_supervised=as_supervised, shuffle_files=shuffle_files)
        info = builder.info
    if int(ds.cardinality()) == 0:
        raise ValueError(f"split={split!r} of the TFDS dataset '{name}' has no examples")
    return ds, info


#: Decoded images are cached in host memory only below this many bytes (a free Colab runtime has
#: 12.7 GB of RAM; the rest is left to the model, the notebook and TensorFlow).
CACHE_BYTES = 2 * 1024 ** 3


def _cacheable(cache: bool | None, n: int, bytes_each: int) -> bool:
    """``cache`` when given; otherwise whether ``n`` items of ``bytes_each`` fit in CACHE_BYTES."""
    return bool(cache) if cache is not None else 0 <= n * bytes_each <= CACHE_BYTES


def pipeline(ds: tf.data.Dataset, batch_size: int, *, shuffle: int | None = None,
             cache: bool = True, drop_remainder: bool = False, seed: int | None = None):
    """cache -> shuffle(buffer ``shuffle``) -> batch -> prefetch: the input pipeline every
    chapter uses. Map the deterministic preprocessing before calling this so the cache holds its
    result; random augmentation needs ``cache=False`` (a cache would replay the first pass).
    Raises ValueError when ``ds`` is empty or (``drop_remainder``) holds less than one batch:
    ``fit`` would otherwise train on nothing and return an empty history."""
    config.positive(batch_size=batch_size)
    n = int(ds.cardinality())
    if n == 0 or n == tf.data.UNKNOWN_CARDINALITY and not any(True for _ in ds.take(1)):
        raise ValueError("pipeline() got an empty dataset: check the split and any filter applied to it")
    if drop_remainder and 0 < n < batch_size:
        raise ValueError(f"the dataset holds {n} examples, less than one batch of batch_size="
                         f"{batch_size} with drop_remainder=True: there would be nothing to train on")
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


def _mnist_pairs(prepare, batch_size, smoke_examples, data_dir):
    """``(train, test)`` MNIST pipelines of ``prepare(image, label)``; train shuffled over all 60,000."""
    return tuple(pipeline(load("mnist", split, as_supervised=True, smoke_examples=smoke_examples,
                               data_dir=data_dir)[0].map(prepare, num_parallel_calls=AUTOTUNE),
                          batch_size, shuffle=60_000 if split == "train" else None)
                 for split in ("train", "test"))


def load_mnist_binary(batch_size: int = 64, *, smoke_examples: int = 128, data_dir=None):
    """Binarised MNIST for PixelCNN: ``(train, test)`` datasets of (float32 input, int32
    target) batches of shape ``(B, 28, 28, 1)``. Train is shuffled over all of it."""
    return _mnist_pairs(binarize, batch_size, smoke_examples, data_dir)


def load_celeba_images(split: str = "test", n: int = 2000, batch: int = 2000, *, data_dir=None):
    """The first ``n`` CelebA images of ``split`` in TFDS order, with their attributes.

    Returns ``(images, attributes)``: a uint8 array ``(n, 218, 178, 3)`` and a dict mapping
    each of the 40 attribute names to a bool array of length ``n``. In smoke mode the images
    are random (mock data) but have the real shapes and keys.
    """
    config.positive(n=n, batch=batch)
    ds, _ = load("celeb_a", split, shuffle_files=False, smoke_examples=n, data_dir=data_dir)
    ds = ds.map(lambda ex: (ex["image"], ex["attributes"]), num_parallel_calls=AUTOTUNE)
    images, attributes = [], {name: [] for name in CELEBA_ATTRIBUTES}
    for image_batch, attr_batch in ds.take(n).batch(batch).prefetch(1).as_numpy_iterator():
        images.append(image_batch)
        for key in attributes:
            attributes[key].append(np.asarray(attr_batch[key], dtype=bool))
    return np.concatenate(images).astype(np.uint8), {k: np.concatenate(v) for k, v in attributes.items()}


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


# --------------------------------------------------------------------------- Chapter 2: autoencoders and VAEs

def to_unit_pair(image, label=None):
    """Chapter 2 preprocessing: the image as float32 in [0, 1] (x/255, not binarised), as
    both input and target of an autoencoder. The label, if given, is dropped."""
    x = tf.cast(image, tf.float32) / 255.0
    return x, x


def load_mnist_autoencoder(batch_size: int = 256, *, smoke_examples: int = 256, data_dir=None):
    """MNIST for the Chapter 2 autoencoders and VAE: ``(train, test)`` datasets of
    ``(x, x)`` batches, x float32 ``(B, 28, 28, 1)`` in [0, 1]. Train is shuffled over all
    60,000 images; both are cached and prefetched."""
    return _mnist_pairs(to_unit_pair, batch_size, smoke_examples, data_dir)


def load_mnist_arrays(split: str = "test", n: int = 1000, *, data_dir=None):
    """The first ``n`` MNIST images of ``split`` as float32 ``(n, 28, 28, 1)`` in [0, 1]
    and their int labels: the digits of Chapter 2's latent-space plots."""
    config.positive(n=n)
    ds, _ = load("mnist", split, as_supervised=True, smoke_examples=n, data_dir=data_dir)
    images, labels = next(ds.take(n).batch(n).as_numpy_iterator())
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def resize_face(image, image_size: int = 112):
    """A CelebA image (218 x 178, uint8) resized straight to ``image_size`` squared
    (bilinear, aspect ratio not kept, as the book does), float32 in [0, 1]."""
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size))
    return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def load_celeba_faces(split: str = "train", batch_size: int = 128, image_size: int = 112, *,
                      shuffle: bool = True, smoke_examples: int = 64, data_dir=None):
    """CelebA faces for the Chapter 2 VAE: batches of ``(x, x)`` with x float32
    ``(B, image_size, image_size, 3)`` in [0, 1]; shuffled with a buffer of 4 batches.
    Not cached in memory (162,770 training faces at 112x112 in float32 are 24 GB)."""
    ds, _ = load("celeb_a", split, shuffle_files=shuffle, smoke_examples=smoke_examples,
                 data_dir=data_dir)
    ds = ds.map(lambda ex: resize_face(ex["image"], image_size), num_parallel_calls=AUTOTUNE)
    return pipeline(ds.map(lambda face: (face, face)), batch_size, shuffle=4 * batch_size if shuffle else None,
                    cache=False)


def load_celeba_with_attributes(split: str = "test", batch_size: int = 128, image_size: int = 112,
                                *, smoke_examples: int = 64, data_dir=None):
    """CelebA batches of ``(x, attributes)``: x as in :func:`load_celeba_faces` (TFDS
    order, not shuffled) and ``attributes`` a dict of the 40 bool tensors of shape (B,)."""
    ds, _ = load("celeb_a", split, shuffle_files=False, smoke_examples=smoke_examples,
                 data_dir=data_dir)
    ds = ds.map(lambda ex: (resize_face(ex["image"], image_size), ex["attributes"]),
                num_parallel_calls=AUTOTUNE)
    return pipeline(ds, batch_size, cache=False)


def _centre_square(image):
    """The largest centred square of an (H, W, ...) array or tensor."""
    h, w = int(image.shape[0]), int(image.shape[1])
    top, left, side = (h - min(h, w)) // 2, (w - min(h, w)) // 2, min(h, w)
    return image[top:top + side, left:left + side]


def square_photo(image, image_size: int = 112):
    """A photo of any size (H, W, 3, uint8 or float in [0, 255]) centre-cropped to a square
    and resized to ``image_size``; float32 in [0, 1]. For editing the reader's own face."""
    return resize_face(_centre_square(tf.convert_to_tensor(image))[..., :3], image_size).numpy()


__all__ += ["to_unit_pair", "load_mnist_autoencoder", "load_mnist_arrays", "resize_face",
            "load_celeba_faces", "load_celeba_with_attributes", "square_photo"]


# --------------------------------------------------------------------------- Chapter 3: GANs

#: Fashion-MNIST class names in label order 0..9.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

#: The CelebA crop of Chapter 3: a 140 x 140 box around the face of each 218 x 178 image.
CELEBA_CROP = dict(offset_height=39, offset_width=19, size=140)


def to_gan_range(image, image_size: int | None = None):
    """uint8 image -> float32 in [-1, 1] (the range of a tanh generator), optionally resized
    bilinearly to ``image_size`` squared first."""
    x = tf.cast(image, tf.float32)
    if image_size is not None and tuple(x.shape[-3:-1]) != (image_size, image_size):
        x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return tf.clip_by_value((x - 127.5) / 127.5, -1.0, 1.0)


def celeba_crop(image, image_size: int = 64):
    """Chapter 3 CelebA preprocessing: the central 140 x 140 crop of a 218 x 178 image
    (:data:`CELEBA_CROP`), resized to ``image_size`` squared, float32 in [-1, 1]."""
    c = CELEBA_CROP
    face = tf.image.crop_to_bounding_box(image, c["offset_height"], c["offset_width"],
                                         c["size"], c["size"])
    return to_gan_range(face, image_size)


def load_gan_images(name: str = "fashion_mnist", batch_size: int = 128, image_size: int | None = None,
                    *, split: str = "train", crop_celeba: bool = True, shuffle: int = 60_000,
                    cache: bool = True, drop_remainder: bool = True, smoke_examples: int = 256,
                    data_dir=None):
    """Unlabelled images for a GAN: batches of float32 ``(B, S, S, C)`` in [-1, 1].

    ``fashion_mnist`` / ``mnist`` keep 28x28 unless ``image_size`` is given (32 for the
    WGANs); ``celeb_a`` is cropped with :func:`celeba_crop` (``image_size`` default 64) and
    is not cached in memory. A WGAN that makes ``n_critic`` critic updates per step wants
    ``batch_size = n_critic * B``.
    """
    ds, _ = load(name, split, shuffle_files=True, smoke_examples=smoke_examples, data_dir=data_dir)
    if name == "celeb_a":
        size = image_size or 64
        prepare = (lambda ex: celeba_crop(ex["image"], size)) if crop_celeba else (
            lambda ex: to_gan_range(ex["image"], size))
        cache = False
    else:
        prepare = lambda ex: to_gan_range(ex["image"], image_size)  # noqa: E731
    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE)
    return pipeline(ds, batch_size, shuffle=shuffle, cache=cache, drop_remainder=drop_remainder)


#: Second component of the 2-D toy data of the mode-collapse notebook. The book's original
#: covariance [[0.2, -2], [-2, 5]] has determinant -3 (not a covariance); this one is valid.
MIXTURE_COV = ((0.5, -1.0), (-1.0, 4.0))


def gaussian_mixture_2d(n: int, seed: int | None = 0, means=((0.0, 0.0), (5.0, 5.0)),
                        covs=((( 1.0, 0.0), (0.0, 1.0)), MIXTURE_COV)):
    """``n`` points of an equal-weight mixture of 2-D Gaussians (a round blob at (0, 0) and an
    elongated one at (5, 5) by default); float32 ``(n, 2)``, components shuffled."""
    rng = np.random.default_rng(seed)
    k = len(means)
    counts = np.bincount(rng.integers(0, k, size=n), minlength=k)
    parts = []
    for mean, cov, count in zip(means, covs, counts):
        cov = np.asarray(cov, dtype=np.float64)
        if np.any(np.linalg.eigvalsh(cov) < -1e-12):
            raise ValueError(f"covariance {cov.tolist()} is not positive semi-definite")
        parts.append(rng.multivariate_normal(mean, cov, size=count))
    points = np.concatenate(parts).astype(np.float32)
    return points[rng.permutation(n)]


__all__ += ["FASHION_MNIST_CLASSES", "CELEBA_CROP", "to_gan_range", "celeba_crop",
            "load_gan_images", "MIXTURE_COV", "gaussian_mixture_2d"]


# --------------------------------------------------------------------------- Chapter 4: image-to-image translation

#: The pix2pix side-by-side archives: where they live, which half is the input A and how many
#: JPEGs each split holds. Each JPEG is 512 x 256, two 256 x 256 images side by side.
PAIRED_ARCHIVES = {
    "facades": dict(url="http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz",
                    a_side="right", counts=dict(train=400, val=100, test=106)),
    "edges2shoes": dict(url="http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz",
                        a_side="left", counts=dict(train=49_825, val=200)),
}


def _synthetic_paired_archive(name: str, n: int = 6, size: int = 256) -> Path:
    """Smoke mode: write ``n`` small synthetic JPEGs per split in the archive's layout
    (``<tmp>/hoig_smoke_paired/<name>/<split>/<i>.jpg``, 2*size wide) and return the folder. A dry
    run writes as many as the real archive holds (``n`` where that is over 1,000), in its own folder.
    The input half (A) is a blue block pattern, like a label map; the target half (B) a
    smooth red-green gradient, like a photo; which side is which follows the real archive."""
    import tempfile

    spec = PAIRED_ARCHIVES[name]
    dry = config.is_dry()
    root = Path(tempfile.gettempdir()) / f"hoig_{'dry' if dry else 'smoke'}_paired" / f"{name}_{size}"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / float(size)
    for split, real in spec["counts"].items():
        count = real if dry and real <= 1_000 else n
        folder = root / name / split
        if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= count:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            blocks = np.kron(rng.integers(0, 4, size=(8, 8)), np.ones((size // 8, size // 8)))
            a = np.stack([0.1 * blocks, 0.2 * blocks, 0.4 + 0.15 * blocks], -1) * 255
            b = np.stack([0.6 + 0.4 * yy, 0.3 + 0.3 * xx * (i + 1) / count, 0.1 * yy], -1) * 255
            halves = (b, a) if spec["a_side"] == "right" else (a, b)
            pixels = np.clip(np.concatenate(halves, axis=1), 0, 255).astype(np.uint8)
            tf.io.write_file(str(folder / f"{i + 1}.jpg"), tf.io.encode_jpeg(pixels, quality=95))
    return root / name


def _complete(folder: Path, name: str, remedy: str) -> Path:
    """``folder`` if it holds every JPEG of the archive ``name``; raises, saying what to delete, if not."""
    for split, expected in PAIRED_ARCHIVES[name]["counts"].items():
        found = len(list((folder / split).glob("*.jpg")))
        if found != expected:
            raise DatasetUnavailableError(f"The pix2pix archive '{name}' is incomplete ({folder / split} "
                                          f"holds {found} of its {expected} JPEGs): {remedy} and run again.")
    return folder


def paired_archive_dir(name: str, *, data_dir=None, smoke_examples: int = 6) -> Path:
    """Folder holding the ``train/``, ``val/`` (``test/``) JPEGs of a pix2pix archive.

    Full run: downloads ``<name>.tar.gz`` once (into ``data_dir`` or ``~/.keras``, under ``datasets/``),
    unpacks it into a temporary folder renamed ``pix2pix_<name>`` once every file is there (an interrupted
    run leaves nothing the next run would reuse); raises :class:`DatasetUnavailableError`, naming what to
    delete, when the host is unreachable or a file is incomplete. Smoke mode: synthetic JPEGs."""
    if name not in PAIRED_ARCHIVES:
        raise ValueError(f"unknown paired archive {name!r}; choose from {sorted(PAIRED_ARCHIVES)}")
    if config.is_smoke():
        return _synthetic_paired_archive(name, n=smoke_examples)
    import gzip
    import zlib
    from urllib.parse import urlparse

    import keras

    url = PAIRED_ARCHIVES[name]["url"]
    datasets = (Path(data_dir).expanduser() if data_dir else Path("~/.keras").expanduser()) / "datasets"
    folder, archive = datasets / f"pix2pix_{name}", datasets / f"{name}.tar.gz"
    if folder.is_dir():
        return _complete(folder, name, f"delete {folder}")
    if not archive.is_file():
        host = urlparse(url).hostname
        if not _can_reach(host, port=80):
            raise DatasetUnavailableError(
                f"Could not download the pix2pix archive '{name}.tar.gz' (no network connection to "
                f"{host}): connect to the internet and run again, or download {url} yourself "
                f"into {archive}.")
        part = archive.with_name(archive.name + ".part")  # renamed once the download is complete
        part.unlink(missing_ok=True)
        try:
            os.replace(keras.utils.get_file(part.name, origin=url, cache_dir=str(datasets.parent)), archive)
        except Exception as err:  # network failure, no disk space
            raise DatasetUnavailableError(
                f"Could not download the pix2pix archive '{name}.tar.gz' ({type(err).__name__} "
                f"while downloading {url}): run again, or download it yourself into {archive}.") from err
    unpacking = datasets / f"pix2pix_{name}.unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)  # left by an interrupted run
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(unpacking, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        os.replace(_complete(unpacking / name, name, f"delete {archive}"), folder)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DatasetUnavailableError(f"{archive} is not a complete .tar.gz archive ({type(err).__name__}: "
                                      f"{err}): delete {archive} and run again.") from err
    finally:
        shutil.rmtree(unpacking, ignore_errors=True)
    return folder


def decode_pair(path, name: str = "facades"):
    """Read one side-by-side JPEG and return ``(A, B)`` as float32 in [0, 255], each half of
    the width: A is the right half for facades (the label map), the left half for
    edges2shoes (the edge map); B is the other half (the photo). A file that is neither a PNG nor
    a JPEG with its start and end markers (cut short, or not an image) stops with an error naming it."""
    raw = tf.io.read_file(path)
    head, tail = tf.strings.substr(raw, 0, 4), tf.strings.substr(tf.strings.join([b"\0\0", raw]), -2, 2)
    whole = (tf.strings.substr(head, 0, 2) == b"\xff\xd8") & (tail == b"\xff\xd9") | (head == b"\x89PNG")
    with tf.control_dependencies([tf.debugging.Assert(whole, [
            "Not a complete JPEG file (cut short or corrupt; delete it or unpack the archive again):", path])]):
        image = tf.io.decode_jpeg(raw, channels=3)
    half = tf.shape(image)[1] // 2
    left = tf.cast(image[:, :half], tf.float32)
    right = tf.cast(image[:, half:], tf.float32)
    return (right, left) if PAIRED_ARCHIVES[name]["a_side"] == "right" else (left, right)


def random_jitter_pair(a, b, load_size: int = 286, crop: int = 256, seed=None):
    """pix2pix's training jitter, identical for both images: resize both to ``load_size``
    (nearest neighbour), cut the *same* random ``crop`` x ``crop`` window from both (they are
    stacked and cropped together) and flip both left-right with probability 0.5."""
    a = tf.image.resize(a, (load_size, load_size), method="nearest")
    b = tf.image.resize(tf.cast(b, a.dtype), (load_size, load_size), method="nearest")
    channels = tf.shape(a)[-1]
    both = tf.concat([a, b], axis=-1)
    both = tf.image.random_crop(both, tf.stack([crop, crop, 2 * channels]), seed=seed)
    both = tf.cond(tf.random.uniform((), seed=seed) < 0.5,
                   lambda: tf.image.flip_left_right(both), lambda: both)
    return both[..., :channels], both[..., channels:]


def to_signed_unit(image):
    """[0, 255] -> [-1, 1] (x / 127.5 - 1), the range of a tanh generator."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def load_paired_archive(name: str = "facades", split: str = "train", *, jitter: bool | None = None,
                        image_size: int = 256, load_size: int | None = None, data_dir=None,
                        smoke_examples: int = 6, cache: bool | None = None) -> tf.data.Dataset:
    """Paired ``(A, B)`` images of a pix2pix archive (facades, edges2shoes), unbatched,
    float32 ``(image_size, image_size, 3)`` in [-1, 1], in file-name order.

    ``jitter`` (default: only for ``'train'``) applies :func:`random_jitter_pair` with
    ``load_size`` (default ``image_size * 286 / 256``) anew on every pass; without it both are
    resized (bilinear) to ``image_size``. ``cache`` keeps the decoded pairs (uint8, before the
    jitter) in memory; by default only when they fit in :data:`CACHE_BYTES` (facades' 400 take
    157 MB; edges2shoes' 49,825 would take 19.6 GB and are decoded again every pass). Batch with
    ``pipeline(..., cache=False)``: a cache after the jitter would replay epoch 1's crops."""
    if name in PAIRED_ARCHIVES and split not in PAIRED_ARCHIVES[name]["counts"]:
        raise ValueError(f"split={split!r}: the '{name}' archive has {list(PAIRED_ARCHIVES[name]['counts'])}")
    config.positive(image_size=image_size)
    root = paired_archive_dir(name, data_dir=data_dir, smoke_examples=smoke_examples)
    folder = root / split
    files = sorted(folder.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise DatasetUnavailableError(f"No JPEG files in {folder}: is the '{name}' archive complete?")
    jitter = (split == "train") if jitter is None else jitter
    load_size = load_size or int(round(image_size * 286 / 256))

    def augment(a, b):
        a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
        if jitter:
            a, b = random_jitter_pair(a, b, load_size, image_size)
        else:
            a = tf.image.resize(a, (image_size, image_size))
            b = tf.image.resize(b, (image_size, image_size))
        return to_signed_unit(a), to_signed_unit(b)

    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in files])
    ds = ds.map(lambda path: tuple(tf.cast(x, tf.uint8) for x in decode_pair(path, name)), AUTOTUNE)
    h, w, c = (int(d) for d in tf.io.extract_jpeg_shape(tf.io.read_file(str(files[0]))))
    if _cacheable(cache, len(files), h * w * c):
        ds = ds.cache()
    return ds.map(augment, num_parallel_calls=AUTOTUNE)


def load_unpaired(name: str = "cycle_gan/horse2zebra", domain: str = "A", split: str = "train", *,
                  jitter: bool | None = None, image_size: int = 256, load_size: int | None = None,
                  smoke_examples: int = 16, data_dir=None, cache: bool | None = None) -> tf.data.Dataset:
    """One domain (``'A'`` or ``'B'``) of a TFDS ``cycle_gan/*`` dataset as unbatched float32
    ``(image_size, image_size, 3)`` images in [-1, 1]. Training images get random jitter
    (resize to ``load_size``, random crop, random flip) anew on every pass; test images are only
    resized. ``cache`` keeps the decoded uint8 images (before the jitter) in memory, by default when
    they fit in :data:`CACHE_BYTES` (horse2zebra's 1,067 horses: 210 MB). Shuffle and zip the two
    domains independently (CycleGAN needs no pairs), with no cache after this."""
    if domain not in ("A", "B"):
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    config.positive(image_size=image_size)
    ds, _ = load(name, f"{split}{domain}", smoke_examples=smoke_examples, data_dir=data_dir)
    jitter = (split == "train") if jitter is None else jitter
    load_size = load_size or int(round(image_size * 286 / 256))

    def augment(image):
        image = tf.cast(image, tf.float32)
        if jitter:
            image = tf.image.resize(image, (load_size, load_size), method="nearest")
            image = tf.image.random_crop(image, (image_size, image_size, 3))
            image = tf.image.random_flip_left_right(image)
        else:
            image = tf.image.resize(image, (image_size, image_size))
        return to_signed_unit(image)

    ds = ds.map(lambda example: example["image"], num_parallel_calls=AUTOTUNE)
    if _cacheable(cache, int(ds.cardinality()), 256 * 256 * 3):
        ds = ds.cache()
    return ds.map(augment, num_parallel_calls=AUTOTUNE)


__all__ += ["PAIRED_ARCHIVES", "paired_archive_dir", "decode_pair", "random_jitter_pair",
            "to_signed_unit", "load_paired_archive", "load_unpaired"]


def sample_image(name: str, size: int | None = None) -> np.ndarray:
    """A photo that ships with scikit-image (``'astronaut'``, ``'coffee'``, ``'chelsea'``,
    ``'rocket'``, ``'immunohistochemistry'``...) as float32 RGB in [0, 1], centre-cropped to a
    square and resized to ``size`` x ``size`` when ``size`` is given. Offline content and style
    images for the notebooks and tests."""
    from skimage import data as skdata
    from skimage.color import gray2rgb
    from skimage.transform import resize

    image = getattr(skdata, name)()
    if image.ndim == 2:
        image = gray2rgb(image)
    image = image[..., :3].astype(np.float32)
    if image.max() > 1.0:
        image /= 255.0
    image = _centre_square(image)
    if size is not None:
        image = resize(image, (size, size), anti_aliasing=True).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def celeba_faces(target_res: int = 64, split: str = "train", smoke_examples: int = 64,
                 shuffle: int = 10_000, data_dir=None) -> tf.data.Dataset:
    """CelebA faces cropped to 140x140 at offset (39, 19), resized (area) to ``target_res``,
    scaled to [-1, 1] and shuffled (unbatched). The resized faces are cached in memory as uint8
    (rounded to the 8 bits the JPEGs had) when they fit in :data:`CACHE_BYTES`: 162,770 faces take
    2.0 GB at 64x64 (8 GB as float32); at 128x128 they are decoded again every pass."""
    ds, _ = load("celeb_a", split, smoke_examples=smoke_examples, data_dir=data_dir)

    def prepare(example):
        face = tf.image.crop_to_bounding_box(example["image"], 39, 19, 140, 140)
        face = tf.image.resize(tf.cast(face, tf.float32), (target_res, target_res), method="area")
        return tf.cast(tf.round(face), tf.uint8)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if _cacheable(None, int(ds.cardinality()), target_res * target_res * 3):
        ds = ds.cache()
    ds = ds.map(lambda face: tf.cast(face, tf.float32) / 127.5 - 1.0, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.shuffle(shuffle) if shuffle else ds


#: CIFAR-10 class names in label order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def cifar10_dataset(batch_size: int = 32, split: str = "train", shuffle: int = 10_000,
                    smoke_examples: int = 64, data_dir=None) -> tf.data.Dataset:
    """CIFAR-10 ``(images in [-1, 1], int32 labels)`` batches, shuffled, repeated."""
    ds, _ = load("cifar10", split, as_supervised=True, smoke_examples=smoke_examples,
                 data_dir=data_dir)
    ds = ds.map(lambda x, y: ((tf.cast(x, tf.float32) - 127.5) / 127.5, tf.cast(y, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(shuffle)
    return ds.repeat().batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
