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
def precision_check():
    """`check(step)` runs `step()` twice, under the float32 and the mixed_float16 policy, with the same
    seed. `step` builds a fresh model, makes one training step on fixed data and returns
    `(model, logs, before)`, `before` being the trainable weights before the step. Asserts the losses are
    finite and the weights move about as much under mixed precision (a ratio within 2x), so loss
    scaling works: without it small float16 gradients underflow and the model stops learning."""
    import keras

    def check(step, networks=lambda model: [model]):
        moved = {}
        for policy in ("float32", "mixed_float16"):
            keras.mixed_precision.set_global_policy(policy)
            try:
                keras.utils.set_random_seed(0)
                model, logs, before = step()
                after = [w for net in networks(model) for w in _weights(net)]
            finally:
                keras.mixed_precision.set_global_policy("float32")
            values = {k: float(np.asarray(v)) for k, v in logs.items()}
            assert all(np.isfinite(v) for v in values.values()), f"{policy}: {values}"
            moved[policy] = float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before))))
        ratio = moved["mixed_float16"] / moved["float32"]
        assert moved["float32"] > 0 and 0.5 <= ratio <= 2.0, moved
        return moved

    return check
