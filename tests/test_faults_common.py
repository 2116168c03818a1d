"""Faults and bad input in the hand-written modules of `common/` (issue 13): the run-mode switches,
dataset names, the manual-download folder, broken JPEGs and archives, empty datasets, zero sizes,
non-finite training, checkpoints that survive a kill -9, and the class picker."""

import io
import os
import random
import re
import signal
import socket
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import callbacks, config, data, viz, widgets


@pytest.fixture
def full_mode(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "0")


def _offline(*_args, **_kwargs):
    raise socket.gaierror(-2, "Name or service not known")


# ---------------------------------------------------------------- 1. the switches
def test_switches_accept_only_the_documented_values(monkeypatch):
    for value, smoke in (("", False), ("0", False), ("No", False), (" off ", False), ("FALSE", False),
                         ("1", True), ("yes", True), ("On", True), ("true", True)):
        monkeypatch.setenv(config.ENV_VAR, value)
        assert config.is_smoke() is smoke, value
    for value in ("Y", "2", "smoke"):
        monkeypatch.setenv(config.ENV_VAR, value)
        with pytest.raises(ValueError, match="HOIG_SMOKE=.* is not understood") as err:
            config.is_smoke()
        assert "\n" not in str(err.value)
    monkeypatch.setenv("HOIG_MIXED_PRECISION", "fast")
    with pytest.raises(ValueError, match="HOIG_MIXED_PRECISION='fast'"):
        config.use_mixed_precision()


# ---------------------------------------------------------------- 2. split and domain names
def test_a_split_or_domain_typo_fails_in_smoke_mode_as_in_a_full_run(monkeypatch, tmp_path):
    assert config.is_smoke()
    with pytest.raises(ValueError, match="no split 'training'.*'test', 'train'"):
        data.load("mnist", "training")
    with pytest.raises(ValueError, match="no split 'trainC'"):
        data.load("cycle_gan/horse2zebra", "trainC")
    with pytest.raises(ValueError, match="domain must be 'A' or 'B', got 'C'"):
        data.load_unpaired("cycle_gan/horse2zebra", domain="C")
    with pytest.raises(ValueError, match="split='training'.*'facades'"):
        data.load_paired_archive("facades", "training")
    ds, _ = data.load("celeb_a", "train[:4]+validation", smoke_examples=4)  # real names and slices pass
    assert int(ds.cardinality()) == 4
    monkeypatch.setenv(config.ENV_VAR, "0")  # a full run offline fails the same way, before any download
    monkeypatch.setattr(socket, "getaddrinfo", _offline)
    with pytest.raises(ValueError, match="no split 'training'"):
        data.load("mnist", "training", data_dir=tmp_path)


# ---------------------------------------------------------------- 3. the manual-download folder
def test_a_stray_file_in_the_manual_folder_fails_fast_and_is_named(full_mode, monkeypatch, tmp_path):
    import tensorflow_datasets as tfds

    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "notes.txt").write_text("not a CelebA file")
    (manual / "img_align_celeba.zip").write_bytes(b"PK")
    monkeypatch.setattr(socket, "getaddrinfo", _offline)

    def no_download(*_args, **_kwargs):  # the real one retries the network for minutes
        raise AssertionError("download_and_prepare must not run offline without the manual files")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    start = time.monotonic()
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("celeb_a", "test", data_dir=tmp_path)
    message = str(err.value)
    assert time.monotonic() - start < 20
    assert "notes.txt" in message and "list_attr_celeba.txt" in message and str(manual) in message
    assert "no network connection" in message and "\n" not in message
    missing = message.split("lacks")[1].split("and holds")[0]
    assert "img_align_celeba.zip" not in missing  # it is there: only the missing files are asked for


# ---------------------------------------------------------------- 4. broken JPEG files
def test_a_truncated_or_corrupt_jpeg_is_named(monkeypatch, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    whole = tf.io.encode_jpeg(pixels).numpy()
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "1.jpg").write_bytes(whole)
    monkeypatch.setattr(data, "paired_archive_dir", lambda *args, **kwargs: tmp_path)
    for broken in (whole[:len(whole) * 2 // 3], b"<html>quota exceeded</html>"):
        (tmp_path / "train" / "2.jpg").write_bytes(broken)
        ds = data.load_paired_archive("facades", "train", image_size=32, jitter=False)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"(?s)Not a complete JPEG file.*" + re.escape(str(tmp_path / "train" / "2.jpg"))):
            list(ds.as_numpy_iterator())
    a, b = next(data.load_paired_archive("facades", "val", image_size=32).as_numpy_iterator())
    assert a.shape == b.shape == (32, 32, 3)  # a whole JPEG still reads


# ---------------------------------------------------------------- 5. pix2pix archives
def _archive(path: Path, counts: dict, garbage: bool = False) -> None:
    if garbage:
        path.write_bytes(b"<html>not found</html>")
        return
    jpeg = tf.io.encode_jpeg(np.zeros((8, 16, 3), np.uint8)).numpy()
    with tarfile.open(path, "w:gz") as tar:
        for split, n in counts.items():
            for i in range(n):
                info = tarfile.TarInfo(f"facades/{split}/{i + 1}.jpg")
                info.size = len(jpeg)
                tar.addfile(info, io.BytesIO(jpeg))


def test_archives_are_unpacked_whole_or_not_at_all(full_mode, monkeypatch, tmp_path):
    counts = dict(train=3, val=1, test=2)
    monkeypatch.setitem(data.PAIRED_ARCHIVES, "facades", {**data.PAIRED_ARCHIVES["facades"], "counts": counts})
    monkeypatch.setattr(data, "_can_reach", lambda *args, **kwargs: True)
    served = {}

    def get_file(fname, origin, cache_dir, **kwargs):  # the download, from a local file
        path = Path(cache_dir) / "datasets" / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        _archive(path, served["counts"], served.get("garbage", False))
        return str(path)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    datasets = tmp_path / "datasets"
    archive = datasets / "facades.tar.gz"
    # a garbage download: the message names the file to delete, and that file exists
    served.update(counts=counts, garbage=True)
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.paired_archive_dir("facades", data_dir=tmp_path)
    assert f"delete {archive} and run again" in str(err.value) and archive.is_file()
    assert not (datasets / "pix2pix_facades").exists()
    # an archive with a file missing: nothing is unpacked for good, the message says what to delete
    archive.unlink()
    served.update(counts=dict(counts, train=2), garbage=False)
    with pytest.raises(data.DatasetUnavailableError, match=r"holds 2 of its 3 JPEGs\): delete "):
        data.paired_archive_dir("facades", data_dir=tmp_path)
    assert not (datasets / "pix2pix_facades").exists()
    # what an interrupted run leaves (a partial unpacking, a partial download) is not reused
    archive.unlink()
    for partial in (datasets / "pix2pix_facades.unpacking/facades/train", datasets / "facades.tar.gz_extracted/facades/train"):
        partial.mkdir(parents=True)
        (partial / "1.jpg").write_bytes(b"\xff\xd8")
    (datasets / "facades.tar.gz.part").write_bytes(b"\x1f\x8b")
    served.update(counts=counts)
    folder = data.paired_archive_dir("facades", data_dir=tmp_path)
    assert {s: len(list((folder / s).glob("*.jpg"))) for s in counts} == counts
    assert not (datasets / "pix2pix_facades.unpacking").exists()
    # a complete folder is reused; one that lost files says to delete it
    assert data.paired_archive_dir("facades", data_dir=tmp_path) == folder
    (folder / "test" / "1.jpg").unlink()
    with pytest.raises(data.DatasetUnavailableError, match=re.escape(f"delete {folder} and run again")):
        data.paired_archive_dir("facades", data_dir=tmp_path)


# ---------------------------------------------------------------- 6. empty datasets
def test_an_empty_dataset_is_refused_before_fit():
    with pytest.raises(ValueError, match="empty dataset"):
        data.pipeline(tf.data.Dataset.range(0), 4)
    with pytest.raises(ValueError, match="empty dataset"):  # unknown cardinality, after a filter
        data.pipeline(tf.data.Dataset.range(5).filter(lambda x: x > 10), 4)
    with pytest.raises(ValueError, match="less than one batch of batch_size=4"):
        data.pipeline(tf.data.Dataset.range(3), 4, drop_remainder=True)
    with pytest.raises(ValueError, match="has no examples"):
        data.load("mnist", "train", smoke_examples=0)
    assert [len(b) for b in data.pipeline(tf.data.Dataset.range(5), 4, drop_remainder=True)] == [4]


# ---------------------------------------------------------------- 7. zero and unsupported sizes
def test_zero_and_unsupported_sizes_name_the_argument():
    z = np.zeros((2, 8), "float32")
    frames = [np.zeros((4, 4), "float32")]
    cases = {
        "every": lambda: callbacks.TrainingCheckpoint("unused", every=0),
        "keep": lambda: callbacks.TrainingCheckpoint("unused", keep=0),
        "every ": lambda: callbacks.SampleGrid(z, every=0),
        "images": lambda: viz.grid_array([]),
        "images ": lambda: viz.image_grid(np.zeros((0, 4, 4))),
        "rows": lambda: viz.grid_array(np.zeros((3, 4, 4)), rows=0),
        "pad": lambda: viz.grid_array(np.zeros((3, 4, 4)), pad=-1),
        "scale": lambda: viz.to_png_bytes(np.zeros((3, 3)), scale=0),
        "value_range": lambda: viz.to_unit_range(np.zeros(3), (1, 1)),
        "columns": lambda: viz.translation_grid([]),
        "batch_size": lambda: data.pipeline(tf.data.Dataset.range(3), 0),
        "n": lambda: data.load_mnist_arrays(n=0),
        "image_size": lambda: data.load_unpaired(image_size=0),
        "scale ": lambda: widgets.StepBrowser(frames, scale=0),
        "titles": lambda: widgets.StepBrowser(frames, titles=["a", "b"]),
        "noise": lambda: widgets.LatentInterpolation(lambda z, training: z, 8, noise="laplace"),
        "z_dim": lambda: widgets.LatentInterpolation(lambda z, training: z, 0),
    }
    for name, call in cases.items():
        with pytest.raises(ValueError, match=rf"\b{name.strip()}\b"):
            call()


# ---------------------------------------------------------------- 8. non-finite training
def _tiny_gan():
    from common import ch03

    keras.utils.set_random_seed(0)
    gan = ch03.GAN(ch03.build_dcgan_generator(z_dim=8, width=16), ch03.build_dcgan_discriminator(width=8))
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    return gan


def test_a_nan_pixel_stops_training_and_keeps_the_finite_checkpoints(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (12, 28, 28, 1)).astype("float32")
    x[8, 3, 3, 0] = np.nan  # in the fifth batch of 2: the first step of the third epoch
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2)
    gan = _tiny_gan()
    with pytest.raises(FloatingPointError, match="d_loss.*nan"):
        gan.fit(ds, steps_per_epoch=2, epochs=5, verbose=0,
                callbacks=[callbacks.TrainingCheckpoint(tmp_path, every=1, keep=2)])
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-00001.npz", "ckpt-00002.npz"]
    fresh = _tiny_gan()
    assert callbacks.restore_checkpoint(fresh, tmp_path) == 2
    assert all(np.isfinite(w.numpy()).all() for w in fresh.generator.weights + fresh.discriminator.weights)
    # a model whose weights went NaN is never written over a good checkpoint
    fresh.generator.weights[0].assign(np.full(fresh.generator.weights[0].shape, np.nan, "float32"))
    with pytest.raises(FloatingPointError, match="weights/0000"):
        callbacks.save_checkpoint(fresh, tmp_path, 3)
    assert not list(tmp_path.glob("ckpt-00003*"))
    with pytest.raises(FloatingPointError, match="d_loss"):  # the stand-alone callback, for any model
        _tiny_gan().fit(tf.data.Dataset.from_tensor_slices(x[8:10]).batch(2), epochs=1, verbose=0,
                        callbacks=[callbacks.StopOnNonFinite()])


# ---------------------------------------------------------------- 9. kill -9 during a save
class _Var:
    """Stands in for a Keras variable: a numpy array that `assign` replaces."""

    def __init__(self, value):
        self.value = np.asarray(value, np.float32)

    def __array__(self, dtype=None, copy=None):
        return self.value

    def assign(self, value):
        self.value = np.array(value)


def _fake_gan(size: int = 1):
    """A stand-in training model: eight variables, no optimizer (checkpoints read only `weights`
    and the optimizers among its attributes)."""
    return SimpleNamespace(weights=[_Var(np.zeros(size)) for _ in range(8)])


def _fill(gan, value) -> None:
    for v in gan.weights:
        v.value = np.full_like(v.value, value)


def test_resume_skips_a_checkpoint_cut_short_and_names_it(tmp_path):
    gan = _fake_gan()
    for epoch in (1, 2):
        _fill(gan, epoch)
        callbacks.save_checkpoint(gan, tmp_path, epoch)
    newest = tmp_path / "ckpt-00002.npz"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as a crash of an older writer leaves it
    with pytest.warns(RuntimeWarning, match=re.escape(str(newest))):
        assert callbacks.latest_checkpoint(tmp_path) == (str(tmp_path / "ckpt-00001.npz"), 1)
    fresh = _fake_gan()
    with pytest.warns(RuntimeWarning, match="skipping the unreadable checkpoint"):
        assert callbacks.restore_checkpoint(fresh, tmp_path) == 1
    assert float(fresh.weights[0].value[0]) == 1.0


def test_save_best_never_overwrites_the_best_weights_in_place(monkeypatch, tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "best.weights.h5"
    best = callbacks.save_best(path, monitor="val_loss")[0]
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 1.0})
    saved = path.read_bytes()

    def killed_mid_save(self, filepath, *args, **kwargs):  # writes half a file, then the process dies
        Path(filepath).write_bytes(saved[:len(saved) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_weights", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        best.on_epoch_end(1, {"val_loss": 0.5})
    assert path.read_bytes() == saved
    model.load_weights(path)


class _FakeModel:
    """`save_weights` writes a file that says how long it should be, slowly enough to be killed in it."""

    def __init__(self, epoch):
        self.epoch = epoch

    def save_weights(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as fh:
            fh.write(self.epoch.to_bytes(8, "little") + (1 << 20).to_bytes(8, "little"))
            for _ in range(16):
                fh.write(b"w" * (1 << 16))
                fh.flush()


def _saver(ckpt, best, start: int) -> None:
    """The child: train forever from epoch `start`, checkpointing every epoch."""
    gan = _fake_gan(size=1 << 18)
    ckpt.set_model(gan)
    model = _FakeModel(start)
    best.set_model(model)
    for epoch in range(start, start + 10_000):
        _fill(gan, epoch + 1)
        ckpt.on_epoch_end(epoch, {"g_loss": 1.0})
        model.epoch = epoch + 1
        best.on_epoch_end(epoch, {"val_loss": 1.0 / (epoch + 1)})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_9_during_saves_always_resumes(tmp_path):
    rng = random.Random(0)
    epoch, cut_short = 0, 0
    for _ in range(20):
        ckpt = callbacks.TrainingCheckpoint(tmp_path, every=1, keep=2)
        best = callbacks.save_best(tmp_path / "best.weights.h5")[0]
        pid = os.fork()
        if pid == 0:  # the child never returns to pytest
            try:
                _saver(ckpt, best, epoch)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the child died on its own"
        cut_short += any(tmp_path.glob("*.tmp.*"))
        gan = _fake_gan(size=1 << 18)
        resumed = callbacks.restore_checkpoint(gan, tmp_path)  # never an unreadable file
        assert resumed >= epoch
        assert all(np.all(v.value == resumed) for v in gan.weights)
        best = tmp_path / "best.weights.h5"
        if best.exists():
            raw = best.read_bytes()
            assert len(raw) == 16 + int.from_bytes(raw[8:16], "little"), "a half-written best-weights file"
        epoch = resumed
    assert epoch > 0 and cut_short > 0, (epoch, cut_short)


# ---------------------------------------------------------------- 10. the class picker
def test_class_picker_refuses_classes_the_generator_does_not_have():
    from common import ch04

    generator = ch04.conditional_dcgan_generator(width=8)  # 10 classes
    with pytest.raises(ValueError, match="12 classes.*labels 0 to 9"):
        widgets.ClassPicker(generator, num_classes=12, scale=1)
    with pytest.raises(ValueError, match="11 classes"):
        widgets.ClassPicker(generator, class_names=[str(i) for i in range(11)], scale=1)
    with pytest.raises(ValueError, match="0 classes"):
        widgets.ClassPicker(generator, num_classes=0, scale=1)
    picker = widgets.ClassPicker(generator, class_names="abc", scale=1)  # a subset is fine
    assert [label for label, _ in picker.dropdown.options] == ["a", "b", "c"]
