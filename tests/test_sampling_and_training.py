"""Pixel-by-pixel sampling, the loss, and learning on real data (spec ch01 §7)."""

import math

import numpy as np
import keras

from common.data import load_digits_binary
from common.demo import bits_per_dim
from common.ch01 import build_pixelcnn
from common.ch01 import pixelcnn_sample


def _small_model(shape=(8, 8, 1)):
    return build_pixelcnn(input_shape=shape, hidden=8, out_features=8, res_blocks=1)


def test_samples_are_binary_and_independent_of_canvas_fill():
    model = _small_model((10, 10, 1))
    a = pixelcnn_sample(model, 3, (10, 10, 1), seed=7, canvas=0.0)
    b = pixelcnn_sample(model, 3, (10, 10, 1), seed=7, canvas=1.0)
    assert a.shape == (3, 10, 10, 1)
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, b)
    c = pixelcnn_sample(model, 3, (10, 10, 1), seed=8)
    assert not np.array_equal(a, c)


def test_samples_follow_a_constant_probability():
    inputs = keras.Input((10, 10, 1))
    outputs = keras.layers.Lambda(lambda x: x * 0.0 + 0.3)(inputs)
    model = keras.Model(inputs, outputs)
    samples = pixelcnn_sample(model, 100, (10, 10, 1), seed=3)  # 10,000 pixels
    assert abs(samples.mean() - 0.3) < 0.02


def test_completion_keeps_the_prefix_and_callback_sees_progress():
    model = _small_model()
    prefix = np.ones((2, 8, 8, 1), "float32")
    frames = []
    out = pixelcnn_sample(model, 2, (8, 8, 1), seed=0, prefix=prefix, prefix_length=32,
                          callback=lambda step, canvas: frames.append((step, canvas)),
                          callback_every=8)
    np.testing.assert_array_equal(out[:, :4], 1.0)
    assert [s for s, _ in frames] == [8, 16, 24, 32]
    assert np.array_equal(frames[-1][1], out)


def test_softmax_sampling_gives_levels():
    model = build_pixelcnn(input_shape=(6, 6, 1), hidden=4, out_features=4, res_blocks=1, num_levels=4)
    out = pixelcnn_sample(model, 2, (6, 6, 1), seed=0)
    assert set(np.rint(np.unique(out) * 3).astype(int)) <= {0, 1, 2, 3}
    np.testing.assert_allclose(out * 3, np.rint(out * 3), atol=1e-6)


def test_binary_cross_entropy_worked_example():
    bce = keras.losses.BinaryCrossentropy()
    assert abs(float(bce(np.array([[1.0]]), np.array([[0.1]]))) - 2.3026) < 1e-4
    assert abs(bits_per_dim(np.array([0.5, 0.5]), np.array([0.0, 1.0])) - 1.0) < 1e-9


def test_one_epoch_on_real_digits_beats_a_fair_coin():
    x_train, x_test = load_digits_binary()
    model = _small_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=keras.losses.BinaryCrossentropy())
    untrained = float(model.evaluate(x_test, x_test, verbose=0))
    assert abs(untrained - math.log(2)) < 0.1
    history = model.fit(x_train, x_train, epochs=2, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < math.log(2) - 0.1
    trained = float(model.evaluate(x_test, x_test, verbose=0))
    assert trained < untrained - 0.1
