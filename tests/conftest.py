"""Test set-up: smoke mode for everything, quiet TensorFlow, a non-interactive plot backend."""

import os

os.environ.setdefault("HOIG_SMOKE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _weights(model):
    return [np.array(w) for w in model.trainable_weights]


@pytest.fixture
def precision_check(monkeypatch):
    """`check(step)` runs `step()` three times with the same seed: under the float32 policy, under
    mixed_float16, and under mixed_float16 with every `compile` forced to XLA (`jit_compile=True`,
    what Keras' "auto" picks on a GPU). `step` builds a fresh model, makes one training step on fixed
    data and returns `(model, logs, before)`, `before` being the trainable weights before the step.
    Asserts the losses are finite and the weights move about as much as in float32 (a ratio within
    2x), so loss scaling works (without it small float16 gradients underflow and the model stops
    learning) and the step compiles with XLA. A step that calls `train_step` itself instead of
    `train_on_batch` reads `check.xla` and wraps it in `tf.function(jit_compile=True)` when it is set."""
    import keras

    compile_ = keras.Model.compile

    def compile_with_xla(self, *args, **kwargs):
        if not kwargs.get("run_eagerly"):
            kwargs["jit_compile"] = True
        return compile_(self, *args, **kwargs)

    def check(step, networks=lambda model: [model]):
        moved = {}
        for variant in ("float32", "mixed_float16", "mixed_float16+xla"):
            keras.mixed_precision.set_global_policy(variant.split("+")[0])
            check.xla = variant.endswith("xla")
            if check.xla:
                monkeypatch.setattr(keras.Model, "compile", compile_with_xla)
            try:
                keras.utils.set_random_seed(0)
                model, logs, before = step()
                after = [w for net in networks(model) for w in _weights(net)]
            finally:
                keras.mixed_precision.set_global_policy("float32")
                monkeypatch.setattr(keras.Model, "compile", compile_)
                check.xla = False
            values = {k: float(np.asarray(v)) for k, v in logs.items()}
            assert all(np.isfinite(v) for v in values.values()), f"{variant}: {values}"
            moved[variant] = float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before))))
        assert moved["float32"] > 0, moved
        for variant in ("mixed_float16", "mixed_float16+xla"):
            assert 0.5 <= moved[variant] / moved["float32"] <= 2.0, moved
        return moved

    def until_applied(step, optimizer, limit=16):
        """Run `step()` until `optimizer` has applied one update; returns the last logs. Under mixed
        precision dynamic loss scaling skips a step whose scaled gradients overflow float16 and halves
        the scale (2**15 at first), as the first steps of a real run do; in float32 the first step
        counts. Every try draws the same noise, so that the update applied is the one float32 applies."""
        for _ in range(limit):
            keras.utils.set_random_seed(1)
            logs = step()
            if int(optimizer.iterations):
                return logs
        raise AssertionError(f"no update applied in {limit} steps")

    check.xla, check.until_applied = False, until_applied
    return check
