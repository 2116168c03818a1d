"""Run mode of the whole project: the *full* run a reader wants, or *smoke* mode for CI.

The switch is read here and nowhere else. Set the environment variable ``HOIG_SMOKE=1``
(the README's test command does) to run every notebook on tiny data, offline, in seconds.
Notebooks declare their full-size hyperparameters once and ask :func:`hparams` for the
values of the current mode, so no notebook carries an ``if smoke:`` of its own.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np

#: Name of the environment variable that selects smoke mode.
ENV_VAR = "HOIG_SMOKE"

#: Canonical home of the project (used for the Colab links and the Colab install cell).
REPO = "hoig-companion/hands-on-image-generation-tf"

_FLAGS = {"": False, "0": False, "false": False, "no": False, "off": False,
          "1": True, "true": True, "yes": True, "on": True}


def flag(name: str) -> bool:
    """The on/off environment variable ``name``: 1/true/yes/on or 0/false/no/off (any case), unset
    or empty meaning off. Anything else raises, so that a typo never means a full run."""
    value = os.environ.get(name, "")
    if value.strip().lower() not in _FLAGS:
        raise ValueError(f"{name}={value!r} is not understood: set it to 1, true, yes or on (or 0, "
                         f"false, no or off), or leave it unset.")
    return _FLAGS[value.strip().lower()]


def positive(**sizes) -> None:
    """Raise one ValueError naming the first of ``sizes`` (name=value) that is not an integer >= 1."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


#: Set by ``python -m common.dryrun``: the full run's sizes on offline mock data, a few steps per loop.
DRY_VAR = "HOIG_DRYRUN"


def is_dry() -> bool:
    """True in a full-size dry run (``HOIG_DRYRUN``, set by ``python -m common.dryrun``)."""
    return flag(DRY_VAR)


def is_smoke() -> bool:
    """True when ``HOIG_SMOKE`` asks for smoke mode (tiny data, offline, few steps). A dry run is
    smoke mode for the data (offline mocks) with the full run's hyperparameters."""
    return flag(ENV_VAR) or is_dry()


def mode() -> str:
    """``'dry'``, ``'smoke'`` or ``'full'``."""
    return "dry" if is_dry() else "smoke" if is_smoke() else "full"


class HParams(SimpleNamespace):
    """Hyperparameters with attribute access; ``dict(hp)`` gives a plain dict back."""

    def __iter__(self):
        return iter(vars(self).items())

    def __getitem__(self, key: str) -> Any:
        return vars(self)[key]


def hparams(full: Mapping[str, Any], smoke: Mapping[str, Any] | None = None) -> HParams:
    """Return the hyperparameters of the current run mode.

    ``full`` holds every value of the real run; ``smoke`` overrides some of them with
    small ones for CI. A smoke key that is not in ``full`` is a typo and raises. A dry run keeps
    every full number (widths, batch sizes, step counts: ``common.dryrun`` cuts the loops short)
    and takes the smoke value only where either value is text (folders, weights, data source), so
    that it never touches the full run's files or the network.
    """
    smoke = dict(smoke or {})
    unknown = sorted(set(smoke) - set(full))
    if unknown:
        raise KeyError(f"smoke overrides unknown hyperparameters: {unknown}")
    values = dict(full)
    if is_dry():
        values.update({k: v for k, v in smoke.items() if isinstance(v, str) or isinstance(full[k], str)})
    elif is_smoke():
        values.update(smoke)
    return HParams(**values)


def steps(n: int, label: str = "steps"):
    """``range(n)`` for a hand-written training or optimisation loop, with a progress bar (updated
    at most every 2 s). A dry run takes only steps 0, 1 and n - 1 (so what a loop does at its end
    still happens) and reports their times."""
    import time

    import keras

    bar = keras.utils.Progbar(int(n), interval=2.0, unit_name=label)
    steps = sorted({0, 1, int(n) - 1} & set(range(int(n)))) if is_dry() else range(int(n))
    times = [time.perf_counter()]
    for i in steps:
        yield i
        bar.update(i + 1)
        times.append(time.perf_counter())
    if is_dry():
        from common import dryrun
        dryrun.record(label, planned=int(n), step_seconds=list(np.diff(times)))


def describe(hp: HParams) -> str:
    """One line naming the mode and the values, for the top of a notebook."""
    items = ", ".join(f"{k}={v}" for k, v in vars(hp).items())
    return f"[{mode()} run] {items}"


def distribution_strategy(batch_size: int | None = None):
    """The ``tf.distribute`` strategy for this machine: ``MirroredStrategy`` over all GPUs
    when there are two or more, otherwise TensorFlow's default (single-device) strategy.

    Build models and optimizers, and call ``compile``, inside ``strategy.scope()``; ``fit``
    then splits every batch between the replicas. The training models in ``common`` scale
    their losses by the number of replicas, so the same code runs on one device or many.
    A global ``batch_size`` that the devices cannot share evenly (pix2pix's batch of 1 on two
    GPUs would leave one replica an empty batch, whose mean loss is NaN) keeps one device.

    ``HOIG_CPU_REPLICAS=N`` on a machine without GPUs mirrors over the first N logical CPUs
    instead: the tests split the CPU in two (``tf.config.set_logical_device_configuration``,
    before TensorFlow starts) to run notebooks on two replicas without a GPU.
    """
    import tensorflow as tf

    devices = [g.name for g in tf.config.list_logical_devices("GPU")]
    cpus = int(os.environ.get("HOIG_CPU_REPLICAS") or 0)
    if len(devices) < 2 and cpus >= 2:
        devices = [c.name for c in tf.config.list_logical_devices("CPU")][:cpus]
        if len(devices) < cpus:
            raise RuntimeError(f"HOIG_CPU_REPLICAS={cpus} but TensorFlow sees {len(devices)} logical CPU(s): "
                               "split the CPU with tf.config.set_logical_device_configuration before "
                               "TensorFlow starts (the first cell), or unset the variable.")
    if len(devices) >= 2 and batch_size is not None and batch_size % len(devices):
        print(f"a batch of {batch_size} does not split evenly between {len(devices)} devices: "
              "training on one")
    elif len(devices) >= 2:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def use_mixed_precision(enabled: bool | None = None) -> str:
    """Switch Keras to the ``mixed_float16`` policy on GPUs (float16 compute, float32 weights),
    which is about twice as fast on tensor-core GPUs. ``enabled=None`` reads the environment
    variable ``HOIG_MIXED_PRECISION``. On a machine without a GPU the policy stays
    ``float32``. Returns the policy name now in force. The training models wrap their optimizers
    with :func:`loss_scaled` and back-propagate with :func:`backprop`, so they train under it."""
    import keras
    import tensorflow as tf

    if enabled is None:
        enabled = flag("HOIG_MIXED_PRECISION")
    policy = "mixed_float16" if enabled and tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def loss_scaled(optimizer):
    """`optimizer` wrapped in Keras' `LossScaleOptimizer` when the `mixed_float16` policy is on, and
    unchanged otherwise. Dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training") keeps
    small float16 gradients from underflowing to zero; the wrapper also skips an update whose
    gradients are not finite and halves the scale. Use it on every optimizer a custom
    `compile` receives, and back-propagate with :func:`backprop`."""
    import keras

    if keras.config.dtype_policy().name == "mixed_float16" and \
            not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def backprop(tape, loss, variables, optimizer, replicas: float = 1.0) -> list:
    """Gradients of `loss` with respect to `variables`, ready for `optimizer.apply_gradients`:
    back-propagation starts from the optimizer's loss scale (1 unless it is a LossScaleOptimizer,
    which divides it out again when it applies them), and every gradient is divided by `replicas`
    (the optimizer sums what the replicas of a `tf.distribute` strategy send). Sparse gradients
    (an Embedding table's) are scaled too."""
    import tensorflow as tf

    seed = optimizer.scale_loss(tf.ones_like(loss))
    grads = tape.gradient(loss, variables, output_gradients=seed)
    if replicas == 1:
        return grads

    def scaled(g):
        if g is None:
            return None
        if isinstance(g, tf.IndexedSlices):
            return tf.IndexedSlices(g.values / replicas, g.indices, g.dense_shape)
        return g / replicas

    return [scaled(g) for g in grads]
