"""Keras 3 layers shared by the notebooks; each one is verified against its definition in tests/."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

__all__ = ["causal_mask", "MaskedConv2D", "PixelCNNResidualBlock"]


def causal_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    """Raster-order mask of a PixelCNN kernel, shape ``(k, k, 1, 1)``, float32.

    Reading the k*k taps in raster order (left to right, top to bottom), taps before the
    centre are 1 and taps after it are 0. The centre tap is 0 for type ``'A'`` (a pixel may
    not see itself: used on the input layer) and 1 for type ``'B'`` (a feature may see the
    features of its own position computed by earlier layers). Van den Oord et al. 2016,
    "Pixel Recurrent Neural Networks" / "Conditional Image Generation with PixelCNN Decoders".
    """
    mask_type = str(mask_type).upper()
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    flat = np.zeros(kernel_size * kernel_size, dtype=np.float32)
    centre = flat.size // 2
    flat[:centre] = 1.0
    if mask_type == "B":
        flat[centre] = 1.0
    return flat.reshape(kernel_size, kernel_size, 1, 1)


@keras.saving.register_keras_serializable(package="common")
class MaskedConv2D(keras.layers.Layer):
    """2-D convolution whose kernel is multiplied by a :func:`causal_mask` (PixelCNN).

    Output at pixel (r, c) depends only on inputs at earlier raster positions (type A) or
    at earlier positions and (r, c) itself (type B). Stride 1, 'same' padding, so the
    spatial size is kept. The mask is a constant numpy array made in ``__init__`` rather
    than a weight: it adds no parameters, and unlike a ``tf.constant`` made in ``build``
    it cannot leak out of the graph in which a nested layer happens to be built.
    """

    def __init__(
        self,
        mask_type: str,
        filters: int,
        kernel_size: int,
        activation=None,
        kernel_initializer="glorot_normal",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_mask = causal_mask(kernel_size, mask_type)  # validates both arguments
        self.mask_type = str(mask_type).upper()
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("MaskedConv2D needs a known number of input channels")
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, channels, self.filters), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)

    def call(self, inputs):
        mask = ops.convert_to_tensor(self.kernel_mask, dtype=self.compute_dtype)
        kernel = ops.cast(self.kernel, self.compute_dtype) * mask
        outputs = ops.conv(inputs, kernel, strides=1, padding="same")
        outputs = outputs + ops.cast(self.bias, self.compute_dtype)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            mask_type=self.mask_type,
            filters=self.filters,
            kernel_size=self.kernel_size,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="common")
class PixelCNNResidualBlock(keras.layers.Layer):
    """PixelCNN residual block: 1x1 (2h->h), 3x3 (h->h), 1x1 (h->2h) type-B masked
    convolutions, each with ReLU, added to the block input (van den Oord et al. 2016, Fig. 5).
    """

    def __init__(self, hidden: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.reduce = MaskedConv2D("B", self.hidden, 1, activation="relu", name="reduce")
        self.conv = MaskedConv2D("B", self.hidden, 3, activation="relu", name="conv")
        self.expand = MaskedConv2D("B", 2 * self.hidden, 1, activation="relu", name="expand")

    def build(self, input_shape):
        if input_shape[-1] != 2 * self.hidden:
            raise ValueError(
                f"PixelCNNResidualBlock({self.hidden}) expects {2 * self.hidden} input channels, "
                f"got {input_shape[-1]}"
            )
        # Build the sublayers here, eagerly, instead of lazily inside a traced call.
        inner = (*input_shape[:-1], self.hidden)
        self.reduce.build(input_shape)
        self.conv.build(inner)
        self.expand.build(inner)

    def call(self, inputs):
        return inputs + self.expand(self.conv(self.reduce(inputs)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden=self.hidden)
        return config
