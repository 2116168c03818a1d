"""Network builders that a notebook, the demo, the benchmark and the tests all share."""

from __future__ import annotations

import keras

from .layers import MaskedConv2D, PixelCNNResidualBlock

__all__ = ["build_pixelcnn"]


def build_pixelcnn(
    input_shape=(28, 28, 1),
    hidden: int = 64,
    out_features: int = 64,
    res_blocks: int = 7,
    num_levels: int | None = None,
    name: str = "PixelCnn",
) -> keras.Model:
    """PixelCNN of the book's Chapter 1 (van den Oord et al. 2016).

    A 7x7 type-A masked convolution to ``2*hidden`` channels, ``res_blocks`` residual
    blocks of type-B masked convolutions, then two 1x1 convolutions. With
    ``num_levels=None`` the output is one sigmoid probability per pixel (binary images);
    with an integer it is a ``num_levels``-way softmax per pixel.
    With the defaults the model has 389,249 parameters, as the book prints.
    """
    inputs = keras.Input(shape=input_shape)
    x = MaskedConv2D("A", 2 * hidden, 7, activation="relu")(inputs)
    for _ in range(res_blocks):
        x = PixelCNNResidualBlock(hidden)(x)
    x = keras.layers.Conv2D(out_features, 1, activation="relu")(x)
    if num_levels is None:
        outputs = keras.layers.Conv2D(input_shape[-1], 1, activation="sigmoid")(x)
    else:
        if input_shape[-1] != 1:
            raise ValueError("the softmax variant models single-channel images only")
        outputs = keras.layers.Conv2D(num_levels, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)
