"""Network builders of the book's Chapter 3 (GANs), shared by its notebooks, the benchmark
and the tests.

Every builder takes a width argument so that smoke mode can shrink the network; with the
defaults the parameter counts are the ones the book prints (checked in tests/test_gan.py).
"""

from __future__ import annotations

import math

import keras

__all__ = [
    "build_dcgan_generator",
    "build_dcgan_discriminator",
    "build_wgan_generator",
    "build_wgan_critic",
    "build_mlp_generator",
    "build_mlp_discriminator",
]


def _stages(image_size: int) -> int:
    """Number of x2 resolution changes between 4x4 and ``image_size`` (a power of two)."""
    stages = math.log2(image_size / 4)
    if image_size < 8 or stages != int(stages):
        raise ValueError(f"image_size must be 4 * 2**k with k >= 1, got {image_size}")
    return int(stages)


def build_dcgan_generator(z_dim: int = 100, width: int = 512, channels: int = 1,
                          momentum: float = 0.9, name: str = "generator") -> keras.Model:
    """DCGAN generator of the book for 28x28 images (Radford et al. 2016, "Unsupervised
    Representation Learning with Deep Convolutional GANs").

    z -> Dense(7*7*width) -> BN -> ReLU -> (7, 7, width) -> [bilinear x2 -> Conv3x3(width/2)
    -> BN -> ReLU] -> [bilinear x2 -> Conv3x3(width/4) -> ReLU] -> Conv3x3(channels, tanh).
    Up-sampling followed by a convolution avoids the checkerboard artefacts of transposed
    convolutions. Defaults: 4,111,361 parameters (50,688 of them BN moving statistics).
    """
    z = keras.Input((z_dim,), name="z")
    x = keras.layers.Dense(7 * 7 * width)(z)
    x = keras.layers.BatchNormalization(momentum=momentum)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Reshape((7, 7, width))(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = keras.layers.Conv2D(width // 2, 3, padding="same")(x)
    x = keras.layers.BatchNormalization(momentum=momentum)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    x = keras.layers.Conv2D(width // 4, 3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    image = keras.layers.Conv2D(channels, 3, padding="same", activation="tanh")(x)
    return keras.Model(z, image, name=name)


def build_dcgan_discriminator(input_shape=(28, 28, 1), width: int = 32, momentum: float = 0.9,
                              dropout: float = 0.0, logits: bool = False,
                              name: str = "discriminator") -> keras.Model:
    """DCGAN discriminator of the book: two stride-2 3x3 convolutions (``width``, ``2*width``),
    each followed by BN and LeakyReLU(0.2), then one Dense unit with a sigmoid (raw logit
    when ``logits=True``). Strided convolutions replace pooling. The book keeps BN on the
    first layer too, against the DCGAN guideline; so do we, to match its count of 22,337.
    """
    image = keras.Input(input_shape, name="image")
    x = image
    for filters in (width, 2 * width):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same")(x)
        x = keras.layers.BatchNormalization(momentum=momentum)(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    score = keras.layers.Dense(1, activation=None if logits else "sigmoid")(x)
    return keras.Model(image, score, name=name)


def build_wgan_generator(image_size: int = 32, channels: int = 1, z_dim: int = 128,
                         width: int = 512, norm: str | None = "batch",
                         name: str = "generator") -> keras.Model:
    """Generator of the book's WGAN and WGAN-GP (and, at 64x64 RGB, of its CelebA model).

    z -> Dense(4*4*width) -> BN -> ReLU -> (4, 4, width), then for every doubling but the
    last: bilinear x2 -> Conv5x5 (half the channels each time) -> BN -> ReLU; finally
    bilinear x2 -> Conv5x5(channels, tanh). Defaults (32x32x1): 5,190,657 parameters;
    ``image_size=64, channels=3``: 5,397,379. ``norm=None`` drops the batch norms.
    """
    stages = _stages(image_size)
    z = keras.Input((z_dim,), name="z")
    x = keras.layers.Dense(4 * 4 * width)(z)
    if norm == "batch":
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Reshape((4, 4, width))(x)
    filters = width
    for _ in range(stages - 1):
        filters //= 2
        x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = keras.layers.Conv2D(filters, 5, padding="same")(x)
        if norm == "batch":
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    image = keras.layers.Conv2D(channels, 5, padding="same", activation="tanh")(x)
    return keras.Model(z, image, name=name)


def _normalization(norm: str | None):
    if norm is None:
        return None
    if norm == "batch":
        return keras.layers.BatchNormalization()
    if norm == "layer":
        # Statistics per sample over (H, W, C) with a per-channel scale and offset. Keras'
        # LayerNormalization() would normalise over the channels of each pixel only.
        return keras.layers.GroupNormalization(groups=1)
    raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")


def build_wgan_critic(image_size: int = 32, channels: int = 1, width: int = 512,
                      norm: str | None = "batch", use_bias: bool = True,
                      name: str = "critic") -> keras.Model:
    """WGAN critic: stride-2 Conv5x5 layers down to 4x4 (the last has ``width`` filters,
    each earlier one half of the next), LeakyReLU(0.2) after each, ``norm`` after all but
    the first, then Flatten -> Dense(1) with a linear output (a score, not a probability).

    - WGAN (Arjovsky et al. 2017): ``norm='batch'`` -> 4,111,361 parameters at 32x32x1.
    - WGAN-GP (Gulrajani et al. 2017): ``norm=None, use_bias=False`` -> 4,107,393; batch
      norm would make one sample's score depend on the others, which a per-sample gradient
      penalty must not see.
    - WGAN-GP on CelebA: ``image_size=64, channels=3, norm='layer', use_bias=False`` ->
      4,315,585.
    """
    stages = _stages(image_size)
    image = keras.Input((image_size, image_size, channels), name="image")
    x = image
    for i in range(stages):
        filters = width // 2 ** (stages - 1 - i)
        x = keras.layers.Conv2D(filters, 5, strides=2, padding="same", use_bias=use_bias)(x)
        layer = _normalization(norm) if i > 0 else None
        if layer is not None:
            x = layer(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    x = keras.layers.Flatten()(x)
    score = keras.layers.Dense(1)(x)
    return keras.Model(image, score, name=name)


def build_mlp_generator(z_dim: int = 100, hidden=(200, 50), out_dim: int = 2,
                        name: str = "generator") -> keras.Model:
    """Small fully connected generator for 2-D toy data: ReLU hidden layers, linear output.
    Defaults: 30,352 parameters."""
    z = keras.Input((z_dim,), name="z")
    x = z
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(z, keras.layers.Dense(out_dim)(x), name=name)


def build_mlp_discriminator(in_dim: int = 2, hidden=(200, 50), name: str = "discriminator"):
    """Fully connected discriminator for 2-D toy data: ReLU hidden layers, one sigmoid unit.
    Defaults: 10,701 parameters."""
    point = keras.Input((in_dim,), name="point")
    x = point
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(point, keras.layers.Dense(1, activation="sigmoid")(x), name=name)
