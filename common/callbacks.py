"""Checkpoints and sample-recording callbacks for long training runs (hand-written plumbing).

``GANCheckpoint`` / ``restore_checkpoint`` save and resume a two-network model (both networks and
both optimizers, so a resumed run continues exactly); ``SampleGrid`` and ``ClassGridCallback``
record the generator's output on fixed inputs during ``fit`` for the notebooks' timelines;
``save_best`` keeps the best weights of a single-network model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import keras

__all__ = ["save_checkpoint", "latest_checkpoint", "restore_checkpoint", "GANCheckpoint", "SampleGrid",
           "ClassGridCallback", "save_best"]


_CKPT_PREFIX = "ckpt-"


def _state_variables(gan):
    """Every variable a resumed run needs, by a stable name."""
    groups = {
        "generator": gan.generator.weights,
        "discriminator": gan.discriminator.weights,
        "g_optimizer": gan.g_optimizer.variables,
        "d_optimizer": gan.d_optimizer.variables,
    }
    return {f"{group}/{i:04d}": v for group, vs in groups.items() for i, v in enumerate(vs)}


def save_checkpoint(gan, directory, epoch: int) -> str:
    """Write the weights of both networks and the state of both optimizers (iterations,
    moments) after ``epoch`` completed epochs; returns the file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: keras.ops.convert_to_numpy(v) for name, v in _state_variables(gan).items()}
    path = directory / f"{_CKPT_PREFIX}{int(epoch):05d}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    (directory / "latest.json").write_text(json.dumps({"epoch": int(epoch), "path": path.name}))
    return str(path)


def latest_checkpoint(directory):
    """``(path, epoch)`` of the newest checkpoint in ``directory``, or ``(None, 0)``."""
    meta = Path(directory) / "latest.json"
    if not meta.exists():
        return None, 0
    info = json.loads(meta.read_text())
    return str(Path(directory) / info["path"]), int(info["epoch"])


def restore_checkpoint(gan, path_or_directory) -> int:
    """Load a checkpoint into a compiled ``gan`` (networks and optimizers); returns the
    number of completed epochs to pass to ``fit(initial_epoch=...)``, 0 when there is none."""
    path = Path(path_or_directory)
    epoch = None
    if path.suffix != ".npz":  # a directory: its newest checkpoint, if any
        if not path.is_dir():
            return 0
        found, epoch = latest_checkpoint(path)
        if found is None:
            return 0
        path = Path(found)
    with np.load(path) as data:
        variables = _state_variables(gan)
        missing = sorted(set(variables) ^ set(data.files))
        if missing:
            raise ValueError(f"checkpoint {path} does not match this model: {missing[:5]} ...")
        for name, var in variables.items():
            var.assign(data[name])
    if epoch is None:
        epoch = int(path.stem.split("-")[-1])
    return epoch


class GANCheckpoint(keras.callbacks.Callback):
    """Save a resumable checkpoint (both networks and both optimizers) every ``every``
    epochs into ``directory``; keep the newest ``keep`` files. Resume a run with
    ``initial_epoch = restore_checkpoint(gan, directory)`` before ``fit``."""

    def __init__(self, directory, every: int = 1, keep: int = 2):
        super().__init__()
        self.directory, self.every, self.keep = Path(directory), int(every), int(keep)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every:
            return
        save_checkpoint(self.model, self.directory, done)
        files = sorted(self.directory.glob(f"{_CKPT_PREFIX}*.npz"))
        for old in files[:-self.keep]:
            old.unlink()


class SampleGrid(keras.callbacks.Callback):
    """Every ``every`` training steps (and once before training) draw the generator on a
    fixed noise batch and keep the images in ``frames`` (with their step numbers in
    ``steps``), so a notebook can plot them or replay them with a widget."""

    def __init__(self, z, every: int = 100, show=None):
        super().__init__()
        self.z = np.asarray(z, dtype="float32")
        self.every, self.show = int(every), show
        self.frames, self.steps = [], []
        self._step = 0

    def _record(self):
        images = keras.ops.convert_to_numpy(self.model.generator(self.z, training=False))
        self.frames.append(images)
        self.steps.append(self._step)
        if self.show is not None:
            self.show(self._step, images)

    def on_train_begin(self, logs=None):
        if not self.steps or self.steps[-1] != self._step:
            self._record()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every == 0:
            self._record()


def save_best(path, monitor: str = "val_loss", patience: int = 5):
    """Two callbacks: keep the weights of the best epoch in ``path`` (which must end in
    ``.weights.h5`` in Keras 3) and stop after ``patience`` epochs without improvement,
    restoring the best weights. ``mode='min'`` is explicit because Keras 3 cannot guess the
    direction of a custom metric such as ``val_rc_loss``."""
    path = str(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weight files must end in '.weights.h5' in Keras 3, got {path!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.ModelCheckpoint(path, monitor=monitor, mode="min", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=patience,
                                      restore_best_weights=True),
    ]


class ClassGridCallback(keras.callbacks.Callback):
    """Every ``every`` steps (and before training) draw G on fixed ``(z, labels)`` and keep
    the images in ``frames`` with their step numbers in ``steps``."""

    def __init__(self, z, labels, every: int = 2500):
        super().__init__()
        self.z = np.asarray(z, "float32")
        self.labels = np.asarray(labels, "int32")
        self.every, self.frames, self.steps, self._step = int(every), [], [], 0

    def _record(self):
        images = self.model.generator([self.z, self.labels], training=False)
        self.frames.append(keras.ops.convert_to_numpy(images))
        self.steps.append(self._step)

    def on_train_begin(self, logs=None):
        if not self.steps or self.steps[-1] != self._step:
            self._record()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every == 0:
            self._record()
