"""MaskedConv2D, the PixelCNN residual block and the book's PixelCNN (spec ch01 §4, §7)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from common.ch01 import MaskedConv2D, PixelCNNResidualBlock, causal_mask
from common.ch01 import build_pixelcnn


# ---------------------------------------------------------------- the mask itself
def test_causal_mask_7x7_type_a_and_b():
    a = causal_mask(7, "A")[..., 0, 0]
    b = causal_mask(7, "B")[..., 0, 0]
    assert a.dtype == np.float32 and causal_mask(7, "A").shape == (7, 7, 1, 1)
    assert a.sum() == 24 and b.sum() == 25
    assert a[3, 3] == 0 and b[3, 3] == 1
    assert np.all(a[:3] == 1) and np.all(a[4:] == 0)
    np.testing.assert_array_equal(a[3], [1, 1, 1, 0, 0, 0, 0])
    diff = b - a
    assert diff.sum() == 1 and diff[3, 3] == 1


@pytest.mark.parametrize("k,ones_a,ones_b", [(3, 4, 5), (1, 0, 1), (5, 12, 13)])
def test_causal_mask_counts(k, ones_a, ones_b):
    assert causal_mask(k, "A").sum() == ones_a
    assert causal_mask(k, "B").sum() == ones_b


def test_causal_mask_3x3_rows():
    np.testing.assert_array_equal(causal_mask(3, "A")[..., 0, 0], [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(causal_mask(3, "B")[..., 0, 0], [[1, 1, 1], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("args", [(4, "A"), (3, "C"), (0, "B")])
def test_causal_mask_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        causal_mask(*args)


# ---------------------------------------------------------------- the layer
def test_masked_conv_shape_params_and_no_mask_weight():
    layer = MaskedConv2D("A", 128, 7)
    out = layer(keras.Input((28, 28, 1)))
    assert tuple(out.shape) == (None, 28, 28, 128)
    assert layer.count_params() == 6400
    assert len(layer.non_trainable_weights) == 0
    assert len(layer.trainable_weights) == 2


def _pixel_gradient(model, shape, r, c, channel=0, seed=0):
    x = tf.constant(np.random.default_rng(seed).normal(size=(1, *shape)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
        target = tf.reduce_sum(y[0, r, c, :]) if channel is None else y[0, r, c, channel]
    return tape.gradient(target, x).numpy()[0]


def _raster_dependence(grad):
    """Per raster position, whether the output depended on any channel of the input there."""
    return (np.abs(grad).sum(-1) > 0).reshape(-1)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_single_masked_layer_is_causal(mask_type):
    layer = MaskedConv2D(mask_type, 4, 5)
    h = w = 9
    for r, c in [(4, 4), (0, 0), (8, 8), (2, 7)]:
        dep = _raster_dependence(_pixel_gradient(layer, (h, w, 3), r, c, channel=None))
        p = r * w + c
        assert not dep[p + 1:].any(), "output depends on a later pixel"
        assert dep[p] == (mask_type == "B"), "wrong dependence on the pixel itself"


def test_mask_a_breaks_if_centre_is_visible():
    """The test above must be able to fail: a layer with the centre opened is caught."""
    layer = MaskedConv2D("A", 4, 5)
    layer.kernel_mask = causal_mask(5, "B")
    dep = _raster_dependence(_pixel_gradient(layer, (9, 9, 1), 4, 4, channel=None))
    assert dep[4 * 9 + 4]


def test_masked_entries_get_zero_gradient():
    layer = MaskedConv2D("A", 2, 3)
    x = tf.random.normal((2, 6, 6, 1))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grad = tape.gradient(loss, layer.kernel).numpy()
    assert np.all(grad[causal_mask(3, "A")[..., 0, 0] == 0] == 0)
    assert np.abs(grad[causal_mask(3, "A")[..., 0, 0] == 1]).sum() > 0


def test_masked_conv_config_round_trip():
    layer = MaskedConv2D("B", 8, 3, activation="relu", name="m")
    x = np.random.default_rng(1).normal(size=(2, 7, 7, 3)).astype("float32")
    y = layer(x)
    clone = MaskedConv2D.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), y, atol=1e-6)
    assert clone.mask_type == "B" and clone.kernel_size == 3


def test_model_save_and_load_round_trip(tmp_path):
    model = build_pixelcnn(input_shape=(8, 8, 1), hidden=4, out_features=4, res_blocks=1)
    x = (np.random.default_rng(0).random((2, 8, 8, 1)) > 0.5).astype("float32")
    path = tmp_path / "pixelcnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


# ---------------------------------------------------------------- residual block and model
def test_residual_block_params_and_shape():
    block = PixelCNNResidualBlock(64)
    out = block(keras.Input((28, 28, 128)))
    assert tuple(out.shape) == (None, 28, 28, 128)
    assert block.count_params() == 8256 + 36928 + 8320 == 53504


def test_residual_block_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expects 128 input channels"):
        PixelCNNResidualBlock(64)(keras.Input((28, 28, 64)))


def test_book_pixelcnn_parameter_counts():
    model = build_pixelcnn()
    assert model.count_params() == 389_249
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 389_249
    assert len(model.non_trainable_weights) == 0
    counts = [layer.count_params() for layer in model.layers]
    assert counts == [0, 6400] + [53504] * 7 + [8256, 65]
    assert tuple(model.output_shape) == (None, 28, 28, 1)
    out = model(np.zeros((1, 28, 28, 1), "float32")).numpy()
    assert np.all((out > 0) & (out < 1))


def test_softmax_variant():
    model = build_pixelcnn(num_levels=256)
    assert model.count_params() == 405_824
    out = model(np.random.default_rng(0).random((2, 28, 28, 1)).astype("float32")).numpy()
    assert out.shape == (2, 28, 28, 256)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-4)


def test_whole_pixelcnn_is_causal():
    model = build_pixelcnn(hidden=8, out_features=8, res_blocks=2)
    for r, c in [(0, 0), (10, 13), (27, 27)]:
        dep = _raster_dependence(_pixel_gradient(model, (28, 28, 1), r, c))
        p = r * 28 + c
        assert not dep[p:].any(), f"pixel {(r, c)} sees itself or a later pixel"
        if (r, c) != (0, 0):
            assert dep[:p].any(), f"pixel {(r, c)} sees nothing before it"


def test_a_mixed_precision_step_moves_the_pixelcnn_like_a_float32_step(precision_check):
    """PixelCNN trains with the standard compile/fit, whose optimizer Keras wraps for loss scaling."""
    import keras

    x = (np.random.default_rng(0).random((8, 12, 12, 1)) > 0.5).astype("float32")

    def step():
        model = build_pixelcnn((12, 12, 1), hidden=8, out_features=8, res_blocks=1)
        model.compile(keras.optimizers.SGD(0.5), loss="binary_crossentropy")
        before = [np.array(w) for w in model.trainable_weights]
        loss = model.train_on_batch(x, x)
        return model, {"loss": loss}, before

    precision_check(step)
