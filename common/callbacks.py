"""Checkpoints and sample-recording callbacks for long training runs (hand-written plumbing).

``TrainingCheckpoint`` saves and resumes any training model of this book: the weights of all its
networks, the state of all its optimizers, the logs of every epoch and what its sample recorders
drew, so a resumed run continues exactly and a rerun after the last epoch trains nothing and still
has everything to plot. ``SampleGrid`` and ``ClassGridCallback`` record the generator's output on
fixed inputs during ``fit`` for the notebooks' timelines; ``save_best`` keeps the best weights of a
single-network model. Files are written under a temporary name and renamed when complete (a run
killed mid-save never leaves half a file in place of a good one); training stops at the first
non-finite logged value, and non-finite weights are never saved.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import keras

from .config import positive

__all__ = ["save_checkpoint", "latest_checkpoint", "restore_checkpoint", "StopOnNonFinite",
           "TrainingCheckpoint", "SampleGrid", "ClassGridCallback", "save_best"]


_CKPT = re.compile(r"ckpt-(\d+)\.npz")


def _optimizers(model) -> dict:
    """name -> optimizer for every optimizer ``model`` holds: Keras' ``optimizer``, attributes such
    as ``g_optimizer``, and dicts of them (``optimizers[network]``)."""
    found = {}
    for attr, value in vars(model).items():
        if attr.startswith("_"):
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, v in items:
            if isinstance(v, keras.optimizers.Optimizer):
                found.setdefault(id(v), (attr if key is None else f"{attr}.{key}", v))
    return dict(sorted(found.values(), key=lambda item: item[0]))


def _state_variables(model):
    """Every variable a resumed run needs, by a stable name: the weights of every network the model
    holds, then every optimizer's state. When Keras' own ``optimizer`` is the only one, it is built
    before ``fit`` would, so that a checkpoint can be restored straight after ``compile``."""
    named = {f"weights/{i:04d}": v for i, v in enumerate(model.weights)}
    optimizers = _optimizers(model)
    for name, optimizer in optimizers.items():
        if list(optimizers) == ["optimizer"] and not optimizer.built:
            optimizer.build(model.trainable_variables)
        named.update({f"{name}/{i:04d}": v for i, v in enumerate(optimizer.variables)})
    return named


def _not_finite(named) -> list:
    """Names of the (name, value) pairs holding a NaN or an infinity."""
    return [k for k, v in named if np.issubdtype(np.asarray(v).dtype, np.floating)
            and not np.isfinite(v).all()]


def save_checkpoint(model, directory, epoch: int, extra: dict | None = None) -> str:
    """Write the weights of every network and the state of every optimizer (iterations, moments)
    of ``model`` after ``epoch`` completed epochs, with the arrays of ``extra`` (name -> array), to
    ``ckpt-<epoch>.npz`` (through a temporary file, renamed when complete); returns the file's path.
    Refuses (FloatingPointError) to save weights that are not finite."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(v) for name, v in _state_variables(model).items()}
    bad = _not_finite(arrays.items())
    if bad:
        raise FloatingPointError(f"not saving the epoch-{epoch} checkpoint: {bad[:3]} hold NaN or "
                                 f"infinite values (the last good checkpoint stays in {directory}).")
    path = directory / f"ckpt-{int(epoch):05d}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays, **{f"extra/{k}": np.asarray(v) for k, v in (extra or {}).items()})
    os.replace(tmp, path)
    return str(path)


def _checkpoints(directory) -> list:
    """``(epoch, path)`` of the checkpoints in ``directory``, newest first."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("ckpt-*.npz")
             if (m := _CKPT.fullmatch(p.name))]
    return sorted(found, reverse=True)


def _read(path) -> dict | None:
    """All arrays of a checkpoint file, or None (with a warning naming it) when it is unreadable."""
    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except Exception as err:  # truncated or corrupt file: BadZipFile, EOFError, OSError, ValueError
        warnings.warn(f"skipping the unreadable checkpoint {path} ({type(err).__name__}: {err}); "
                      f"trying an older one", RuntimeWarning, stacklevel=3)
        return None


def latest_checkpoint(directory):
    """``(path, epoch)`` of the newest readable checkpoint in ``directory``, or ``(None, 0)``;
    an unreadable newer one is skipped with a warning naming it."""
    for epoch, path in _checkpoints(directory):
        if _read(path) is not None:
            return str(path), epoch
    return None, 0


def _restore(model, path_or_directory):
    """``(epoch, extra arrays)`` of the checkpoint loaded into ``model``; ``(0, {})`` if none."""
    path = Path(path_or_directory)
    candidates = [(int(path.stem.split("-")[-1]), path)] if path.suffix == ".npz" else _checkpoints(path)
    for epoch, file in candidates:
        arrays = _read(file)
        if arrays is None:
            continue
        extra = {k[len("extra/"):]: v for k, v in arrays.items() if k.startswith("extra/")}
        variables = _state_variables(model)
        missing = sorted(set(variables) ^ (set(arrays) - {f"extra/{k}" for k in extra}))
        if missing:
            raise ValueError(f"checkpoint {file} does not match this model: {missing[:5]} ...")
        for name, var in variables.items():
            var.assign(arrays[name])
        return epoch, extra
    if path.suffix == ".npz":
        raise ValueError(f"the checkpoint {path} cannot be read: delete it, or pass its directory")
    return 0, {}


def restore_checkpoint(model, path_or_directory) -> int:
    """Load a checkpoint into a compiled ``model`` (networks and optimizers); returns the
    number of completed epochs to pass to ``fit(initial_epoch=...)``, 0 when there is none.
    Given a directory, resumes from its newest readable checkpoint (a file cut short by a
    crash is skipped with a warning naming it)."""
    return _restore(model, path_or_directory)[0]


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop training (FloatingPointError) at the first step where any logged value (every loss
    and metric, whatever its name) is NaN or infinite. Keras' ``TerminateOnNaN`` only reads a
    ``loss`` key, which the GANs of this book do not log."""

    def on_train_batch_end(self, batch, logs=None):
        self.check(logs, f"step {batch} of the epoch")

    def check(self, logs, where: str):
        """Raise FloatingPointError naming the logged values that are not finite."""
        logs = {k: keras.ops.convert_to_numpy(v) for k, v in (logs or {}).items()}
        bad = _not_finite(logs.items())
        if bad:
            raise FloatingPointError(
                f"training stopped at {where}: {', '.join(bad)} became "
                f"{logs[bad[0]]} (a NaN in the data, or a learning rate too high).")


class TrainingCheckpoint(StopOnNonFinite):
    """Save a resumable checkpoint of a training model every ``every`` epochs into ``directory``
    and keep the newest ``keep``: its networks and optimizers, ``history`` (each logged value per
    epoch, also those of earlier runs) and the frames of the sample ``recorders``. Resume with
    ``initial_epoch = checkpoint.restore(model)`` before ``fit``; after the last epoch a rerun
    trains nothing and ``history`` and the recorders still hold the whole run; a run that a callback
    stopped early (EarlyStopping, listed before this one) is saved as ``finished``, which ``restore``
    reports so a rerun can skip ``fit``. Stops training at an epoch's end with a non-finite loss
    (checked per epoch, not per step: no host sync every step on a GPU), so a good checkpoint is
    never rotated out by a diverged one."""

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, directory, every: int = 1, keep: int = 2, recorders=()):
        super().__init__()
        positive(every=every, keep=keep)
        self.directory, self.every, self.keep = Path(directory), int(every), int(keep)
        self.recorders, self.history, self.finished, self._epoch = list(recorders), {}, False, 0

    def restore(self, model) -> int:
        """Load the newest readable checkpoint into ``model``, ``history``, ``finished`` and the
        recorders; returns the epochs it had completed (0 when there is none)."""
        epoch, extra = _restore(model, self.directory)
        self.history = json.loads(str(extra["history"])) if "history" in extra else {}
        self.finished = bool(extra.get("finished", False))
        for i, rec in enumerate(self.recorders):
            if f"frames{i}" in extra:
                rec.frames, rec.steps = list(extra[f"frames{i}"]), [int(s) for s in extra[f"steps{i}"]]
                rec._step = int(extra[f"count{i}"])
        return epoch

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = done = epoch + 1
        self.check(logs, f"the end of epoch {done}")
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if done % self.every == 0:
            self._save(done)

    def on_train_end(self, logs=None):
        if self.model.stop_training and self._epoch:  # stopped early by a callback, not by an error
            self.finished = True
            self._save(self._epoch)

    def _save(self, done: int):
        extra = {"history": json.dumps(self.history), "finished": self.finished}
        for i, rec in enumerate(self.recorders):
            if rec.frames:
                extra.update({f"frames{i}": np.stack(rec.frames), f"steps{i}": np.asarray(rec.steps),
                              f"count{i}": np.asarray(rec._step)})
        save_checkpoint(self.model, self.directory, done, extra)
        for _, old in _checkpoints(self.directory)[self.keep:]:
            old.unlink()
        for stale in self.directory.glob("ckpt-*.tmp.npz"):  # left by a run killed while saving
            stale.unlink()


class _Recorder(keras.callbacks.Callback):
    """Every ``every`` training steps (and once before training) call ``_draw()`` and keep the
    images in ``frames`` with their step numbers in ``steps``."""

    def __init__(self, every: int):
        super().__init__()
        positive(every=every)
        self.every, self.frames, self.steps, self._step = int(every), [], [], 0

    def _record(self):
        self.frames.append(keras.ops.convert_to_numpy(self._draw()))
        self.steps.append(self._step)

    def on_train_begin(self, logs=None):
        if not self.steps or self.steps[-1] != self._step:
            self._record()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every == 0:
            self._record()


class SampleGrid(_Recorder):
    """Every ``every`` training steps (and once before training) draw the generator on a
    fixed noise batch and keep the images in ``frames`` (with their step numbers in
    ``steps``), so a notebook can plot them or replay them with a widget; ``show(step,
    images)``, when given, is called with each new frame."""

    def __init__(self, z, every: int = 100, show=None):
        super().__init__(every)
        self.z, self.show = np.asarray(z, dtype="float32"), show

    def _record(self):
        super()._record()
        if self.show is not None:
            self.show(self.steps[-1], self.frames[-1])

    def _draw(self):
        return self.model.generator(self.z, training=False)


class ClassGridCallback(_Recorder):
    """Every ``every`` steps (and before training) draw G on fixed ``(z, labels)`` and keep
    the images in ``frames`` with their step numbers in ``steps``."""

    def __init__(self, z, labels, every: int = 2500):
        super().__init__(every)
        self.z, self.labels = np.asarray(z, "float32"), np.asarray(labels, "int32")

    def _draw(self):
        return self.model.generator([self.z, self.labels], training=False)


class BestWeights(keras.callbacks.Callback):
    """Save the model's weights to ``path`` whenever the logged ``monitor`` reaches a new
    minimum: written to a temporary file and renamed (Keras' ModelCheckpoint overwrites the
    file in place, so a crash mid-save would lose the best weights)."""

    def __init__(self, path, monitor: str = "val_loss"):
        super().__init__()
        self.path, self.monitor, self.best = str(path), monitor, np.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and value < self.best:
            self.best = float(value)
            tmp = self.path[:-len(".weights.h5")] + ".tmp.weights.h5"
            self.model.save_weights(tmp)
            os.replace(tmp, self.path)


def save_best(path, monitor: str = "val_loss", patience: int = 5):
    """Two callbacks: keep the weights of the best epoch in ``path`` (which must end in
    ``.weights.h5`` in Keras 3; see :class:`BestWeights`) and stop after ``patience`` epochs
    without improvement, restoring the best weights. ``mode='min'`` is explicit because Keras 3
    cannot guess the direction of a custom metric such as ``val_rc_loss``."""
    path = str(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weight files must end in '.weights.h5' in Keras 3, got {path!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return [BestWeights(path, monitor),
            keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=patience,
                                          restore_best_weights=True)]
