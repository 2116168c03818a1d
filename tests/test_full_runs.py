"""What a reader's full run needs from the notebooks, checked in smoke mode: random augmentation
that is drawn anew on every pass over the data, pipelines that do not cache more than fits in a free
Colab runtime's memory, and a smoke run that never reads or writes a full run's files."""
import ast
import json
import os
import re
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from common import data

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(ROOT.glob("Chapter[0-9][0-9]/*.ipynb"))
FULL_RUN_FOLDERS = ("checkpoints/", "outputs/")


def _code_cells(path: Path) -> list[str]:
    """The code cells of a notebook, IPython magics (the install cell's %pip) commented out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["\n".join("#" + line if re.match(r"\s*[%!][A-Za-z]", line) else line
                      for line in "".join(c["source"]).splitlines())
            for c in cells if c["cell_type"] == "code"]


def _hparams_call(path: Path):
    """The ``config.hparams(full=..., smoke=...)`` call of a notebook (every notebook has one)."""
    for source in _code_cells(path):
        if "config.hparams(" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "hparams":
                return {k.arg: k.value for k in node.keywords}
    raise AssertionError(f"{path.name} has no config.hparams(...) call")


def _dict_items(node) -> dict:
    assert isinstance(node, ast.Call) and node.func.id == "dict", ast.unparse(node)
    return {k.arg: k.value for k in node.keywords}


def _full_run_path(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
            node.value.startswith(FULL_RUN_FOLDERS):
        return node.value
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_smoke_mode_never_reads_or_writes_a_full_runs_files(path):
    """Every full-run path (under checkpoints/ or outputs/) is replaced in smoke mode by one that is
    not: before this, the suite wrote 4-filter weights where a reader's full run then tried to resume
    (and PixelCNN's smoke run restored a full run's backup). Every such path is ignored by git."""
    call = _hparams_call(path)
    full, smoke = _dict_items(call["full"]), _dict_items(call.get("smoke", ast.parse("dict()").body[0].value))
    for key, value in full.items():
        target = _full_run_path(value)
        if target is None:
            continue
        assert key in smoke, f"{path.name}: smoke mode uses the full run's {key}={target!r}"
        assert _full_run_path(smoke[key]) is None and "checkpoints/" not in ast.unparse(smoke[key]), \
            f"{path.name}: smoke mode's {key} is a full-run folder: {ast.unparse(smoke[key])}"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path.parent / target)], cwd=ROOT)
        assert ignored.returncode == 0, f"{path.parent.name}/{target} is not ignored by git"
    for source in _code_cells(path):
        if "config.hparams(" in source:
            continue
        literals = [n.value for n in ast.walk(ast.parse(source)) if _full_run_path(n)]
        assert not literals, f"{path.name} names full-run paths outside its hyperparameters: {literals}"


def _run_until(path: Path, name: str) -> dict:
    """Execute a notebook's code cells (smoke mode, its own folder) until one defines ``name``."""
    namespace = {"__name__": "__notebook__", "display": lambda *a, **k: None}
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for source in _code_cells(path):
            exec(compile(source, str(path), "exec"), namespace)
            if name in namespace:
                return namespace
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt
        plt.close("all")
    if name != "\0 every cell":
        raise AssertionError(f"{path.name} never defines {name}")
    return namespace


AUGMENTED = ["Chapter04/ch04_pix2pix.ipynb", "Chapter04/ch04_bicyclegan.ipynb",
             "Chapter04/ch04_cyclegan_facades.ipynb", "Chapter04/ch04_cyclegan_horse2zebra.ipynb"]


@pytest.mark.parametrize("notebook", AUGMENTED, ids=lambda p: Path(p).stem)
def test_random_augmentation_is_drawn_anew_on_every_pass(notebook, monkeypatch):
    """64 training images taken from the notebook's own ``train_ds`` (several passes over the
    smoke data: 6 pairs per split, 16 images per domain) are nearly all different when the jitter is
    drawn every pass; a cache placed after the jitter replays the first pass, so at most 16 of them
    could differ. Each input of the pipeline (A and B) is counted on its own: CycleGAN zips two
    independently shuffled streams whose combinations differ even when each stream is frozen."""
    monkeypatch.setenv("HOIG_SMOKE", "1")
    ns = _run_until(ROOT / notebook, "train_ds")
    examples = list(ns["train_ds"].unbatch().take(64).as_numpy_iterator())
    assert len(examples) == 64
    for stream in range(len(examples[0])):
        distinct = {np.asarray(ex[stream]).tobytes() for ex in examples}
        assert len(distinct) > 32, (f"{notebook}: stream {stream} repeats itself ({len(distinct)} "
                                    "distinct of 64): is the jittered data cached?")


def test_cache_only_what_fits_in_a_colab_runtime():
    """The caching decisions at the real datasets' sizes (uint8 bytes): facades' 400 pairs and
    CelebA at 64x64 (162,770 faces) fit under CACHE_BYTES; edges2shoes' 49,825 pairs and CelebA at
    128x128 do not (19.6 GB and 8 GB), so they are decoded every pass instead."""
    pair = 256 * 512 * 3
    assert data._cacheable(None, data.PAIRED_ARCHIVES["facades"]["counts"]["train"], pair)
    assert not data._cacheable(None, data.PAIRED_ARCHIVES["edges2shoes"]["counts"]["train"], pair)
    assert data._cacheable(None, 162_770, 64 * 64 * 3)
    assert not data._cacheable(None, 162_770, 128 * 128 * 3)
    assert not data._cacheable(None, -2, 3)  # unknown size: never cached blindly
    assert data._cacheable(True, 10 ** 9, 10 ** 9) and not data._cacheable(False, 1, 1)


def _run_twice(path: Path, folders: Path, monkeypatch) -> list:
    """Execute a whole notebook in-process twice (smoke mode), with ``tempfile.mkdtemp`` giving
    the notebook the same folder for the same prefix both times, so that the second run finds the
    first run's checkpoints, as a reader's rerun would. Returns, per run, ``(epochs trained,
    checkpointed)`` for every ``fit`` call."""
    import tempfile

    import keras

    from common import callbacks

    real_mkdtemp, real_fit = tempfile.mkdtemp, keras.Model.fit

    def mkdtemp(suffix=None, prefix=None, dir=None):
        if prefix and re.match(r"ch\d\d_", prefix):  # the notebook's own folders
            folder = folders / prefix
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder)
        return real_mkdtemp(suffix, prefix, dir)

    runs = []

    def fit(self, *args, **kwargs):
        history = real_fit(self, *args, **kwargs)
        checkpointed = any(isinstance(c, callbacks.TrainingCheckpoint) for c in kwargs.get("callbacks") or [])
        runs[-1].append((len(history.epoch), checkpointed))
        return history

    monkeypatch.setenv("HOIG_SMOKE", "1")
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(keras.Model, "fit", fit)
    for _ in range(2):
        runs.append([])
        keras.backend.clear_session()
        _run_until(path, "\0 every cell")
    return runs


#: One notebook per kind of training model: Chapter 3's AdversarialModel, Chapter 4's
#: MultiNetworkGAN, a model trained by Keras' own optimizer (AdaIN). ``HOIG_RERUN_ALL=1`` checks
#: every notebook that checkpoints its training (about 20 minutes on 2 cores: run it after changing
#: a training cell; docs/CONTRIBUTING.md says so).
RERUN = ["Chapter03/ch03_dcgan.ipynb", "Chapter04/ch04_cgan.ipynb", "Chapter05/ch05_adain.ipynb"]
if os.environ.get("HOIG_RERUN_ALL"):
    RERUN = sorted(str(p.relative_to(ROOT)) for p in NOTEBOOKS if "TrainingCheckpoint(" in p.read_text())


@pytest.mark.parametrize("notebook", RERUN, ids=lambda p: Path(p).stem)
def test_a_rerun_after_the_last_epoch_trains_nothing_and_draws_every_cell(notebook, tmp_path, monkeypatch):
    """Run a notebook, then run it again as a reader would after the training finished (or in a
    new session): the checkpointed training trains no epoch the second time, and every cell after
    it still runs (plots of the history and of the recorded samples included)."""
    first, second = _run_twice(ROOT / notebook, tmp_path, monkeypatch)
    assert any(n > 0 and ckpt for n, ckpt in first), f"{notebook}: no checkpointed training ran: {first}"
    assert all(n == 0 for n, ckpt in second if ckpt), f"{notebook}: the rerun trained again: {second}"


# ------------------------------------------------------------- TrainingCheckpoint's contents
def _tiny_gan(seed: int = 0):
    import keras

    from common import ch03

    keras.utils.set_random_seed(seed)
    gan = ch03.GAN(ch03.build_dcgan_generator(z_dim=8, width=16), ch03.build_dcgan_discriminator(width=8))
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    return gan


def test_a_resumed_checkpoint_brings_back_the_logs_and_the_recorded_samples(tmp_path):
    """A new session restores, beside the weights and optimizers, every epoch's logs and the sample
    recorder's frames and step count; a fit after the last epoch adds nothing to either."""
    from common import callbacks

    x = np.random.default_rng(0).uniform(-1, 1, (32, 28, 28, 1)).astype("float32")
    z = np.random.default_rng(1).standard_normal((4, 8)).astype("float32")
    gan, samples = _tiny_gan(), callbacks.SampleGrid(z, every=3)
    checkpoint = callbacks.TrainingCheckpoint(tmp_path, recorders=[samples])
    gan.fit(x, batch_size=16, epochs=3, verbose=0, callbacks=[samples, checkpoint])
    assert samples.steps == [0, 3, 6] and len(checkpoint.history["d_loss"]) == 3

    again, resumed = _tiny_gan(seed=5), callbacks.SampleGrid(z, every=3)
    restored = callbacks.TrainingCheckpoint(tmp_path, recorders=[resumed])
    assert restored.restore(again) == 3
    assert restored.history == checkpoint.history
    assert resumed.steps == samples.steps and resumed._step == 6
    np.testing.assert_array_equal(np.stack(resumed.frames), np.stack(samples.frames))
    history = again.fit(x, batch_size=16, epochs=3, initial_epoch=3, verbose=0, callbacks=[resumed, restored])
    assert history.epoch == [] and restored.history == checkpoint.history and resumed.steps == [0, 3, 6]
    assert int(again.g_optimizer.iterations) == int(gan.g_optimizer.iterations) == 6


def test_every_network_and_optimizer_of_a_four_network_model_is_checkpointed(tmp_path):
    """CycleGAN holds four networks and a dict of four optimizers: all of them round-trip."""
    import keras

    from common import callbacks, ch04

    def cycle_gan():
        keras.utils.set_random_seed(0)
        shape = (128, 128, 3)
        nets = [ch04.unet_generator(shape, base_filters=2) for _ in range(2)] + \
               [ch04.patchgan_discriminator(shape, conditional=False, base_filters=2) for _ in range(2)]
        model = ch04.CycleGAN(*nets)
        model.compile()
        return model

    model = cycle_gan()
    names = callbacks._state_variables(model)
    assert {n.split("/")[0] for n in names} == {"weights", "optimizers.d_a", "optimizers.d_b",
                                               "optimizers.g_ab", "optimizers.g_ba"}
    for i, opt in enumerate(model.optimizers.values()):
        opt.iterations.assign(10 + i)
        opt.variables[-1].assign(np.full(opt.variables[-1].shape, 0.5 + i, "float32"))
    model.d_a.weights[0].assign(np.ones(model.d_a.weights[0].shape, "float32"))
    callbacks.save_checkpoint(model, tmp_path, 1)
    fresh = cycle_gan()
    assert callbacks.restore_checkpoint(fresh, tmp_path) == 1
    for a, b in zip(model.optimizers.values(), fresh.optimizers.values()):
        assert all(np.array_equal(u.numpy(), v.numpy()) for u, v in zip(a.variables, b.variables))
    assert np.all(fresh.d_a.weights[0].numpy() == 1)


def test_a_run_stopped_early_is_saved_as_finished_with_its_best_weights(tmp_path):
    """EarlyStopping (before the checkpoint in the list) ends a run; the checkpoint written at its
    end holds the restored best weights and says the run is finished, so a rerun can skip fit."""
    import keras

    from common import callbacks

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        m.compile(keras.optimizers.SGD(0.1), "mse")
        return m

    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
    first = model()
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9, restore_best_weights=True)
    checkpoint = callbacks.TrainingCheckpoint(tmp_path)
    first.fit(x, x[:, :1], epochs=10, verbose=0, callbacks=[stop, checkpoint])
    assert checkpoint.finished and len(checkpoint.history["loss"]) == 2
    again, restored = model(), callbacks.TrainingCheckpoint(tmp_path)
    assert restored.restore(again) == 2 and restored.finished
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))
    fresh_run = callbacks.TrainingCheckpoint(tmp_path / "other")
    assert fresh_run.restore(model()) == 0 and not fresh_run.finished


def test_the_sample_recorder_draws_every_due_step_and_the_last_one():
    from common import callbacks

    x = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype("float32")
    z = np.random.default_rng(1).standard_normal((2, 8)).astype("float32")
    gan, samples = _tiny_gan(), callbacks.SampleGrid(z, every=2)
    gan.fit(x, batch_size=8, epochs=2, verbose=0, callbacks=[samples])  # 5 steps per epoch
    assert samples.steps == [0, 2, 4, 6, 8, 10] and len(samples.frames) == 6
    np.testing.assert_allclose(samples.frames[-1], gan.generator(z, training=False).numpy(), atol=1e-6)
