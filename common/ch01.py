"""Chapter 1: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import tensorflow as tf
from typing import Mapping


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


def pixelcnn_sample(model, n: int, image_shape=(28, 28, 1), seed: int = 0, canvas: float = 0.0,
                    prefix=None, prefix_length: int = 0, callback=None, callback_every: int = 1):
    """Draw ``n`` images from a PixelCNN in raster order (row, column, channel).

    For each position the model is run on the current canvas (a compiled forward pass,
    not ``predict``) and the pixel is drawn from the model's distribution there: a
    Bernoulli for a sigmoid output, a categorical for a softmax output (the value is then
    the level index divided by ``levels - 1``). Uniform numbers are drawn up front from
    ``seed``, so a causal model gives the same images whatever ``canvas`` value the
    not-yet-sampled pixels are filled with.

    ``prefix`` (images of ``image_shape``) with ``prefix_length`` keeps the first
    ``prefix_length`` raster positions of those images and samples the rest (completion).
    ``callback(step, canvas)`` is called every ``callback_every`` positions with a numpy copy.
    Returns a float32 numpy array ``(n, *image_shape)``.
    """
    h, w, c = image_shape
    rng = tf.random.Generator.from_seed(seed)
    uniform = rng.uniform((n, h, w, c)).numpy()
    image = np.full((n, h, w, c), canvas, dtype=np.float32)
    if prefix is not None:
        prefix = np.asarray(prefix, dtype=np.float32).reshape(n, h, w, c)
        flat_image, flat_prefix = image.reshape(n, -1), prefix.reshape(n, -1)
        flat_image[:, : prefix_length * c] = flat_prefix[:, : prefix_length * c]
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    start = prefix_length if prefix is not None else 0
    step = 0
    for pos in range(start, h * w):
        r, col = divmod(pos, w)
        probs = forward(tf.constant(image)).numpy()
        for ch in range(c):
            if probs.shape[-1] == c:  # one sigmoid probability per channel
                image[:, r, col, ch] = (uniform[:, r, col, ch] < probs[:, r, col, ch]).astype(np.float32)
            else:  # softmax over levels: inverse-CDF sampling with the same uniform numbers
                p = probs[:, r, col, :]
                cdf = np.cumsum(p, axis=-1)
                level = np.minimum((uniform[:, r, col, ch, None] >= cdf).sum(-1), p.shape[-1] - 1)
                image[:, r, col, ch] = level / (p.shape[-1] - 1)
        step += 1
        if callback is not None and (step % callback_every == 0 or pos == h * w - 1):
            callback(step, image.copy())
    return image


def select(attributes: Mapping[str, np.ndarray], conditions: Mapping[str, bool]) -> np.ndarray:
    """Boolean index of the images whose attributes equal every value in ``conditions``.

    This is conditioning in the counting sense: p(x | y) is estimated from the images
    with attributes y. An empty ``conditions`` selects everything.
    """
    n = len(next(iter(attributes.values())))
    keep = np.ones(n, dtype=bool)
    for name, value in conditions.items():
        if name not in attributes:
            raise KeyError(f"unknown attribute {name!r}")
        keep &= np.asarray(attributes[name], dtype=bool) == bool(value)
    return keep


def conditional_face(images: np.ndarray, attributes, conditions, stat: str = "mean",
                     max_images: int | None = None):
    """Mean or median face of the images matching ``conditions``.

    Returns ``(face, count)``: the face as a uint8 image and the number of matching images,
    or ``(None, 0)`` when nothing matches. The mean is accumulated in float64; the median is
    taken over at most ``max_images`` of the matches (it needs them all in memory at once).
    """
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    index = np.flatnonzero(select(attributes, conditions))
    count = int(index.size)
    if count == 0:
        return None, 0
    if stat == "mean":
        total = np.zeros(images.shape[1:], dtype=np.float64)
        for start in range(0, count, 1000):  # chunks keep the float copy small
            total += images[index[start:start + 1000]].sum(axis=0, dtype=np.float64)
        face = total / count
    else:
        chosen = index if max_images is None else index[:max_images]
        face = np.median(images[chosen], axis=0)
    return np.clip(np.rint(face), 0, 255).astype(np.uint8), count


def pixelwise_random_sample(images: np.ndarray, rng: np.random.Generator | int | None = None):
    """New image whose every pixel (all channels together) is copied from an image of the
    set chosen uniformly at random, independently per pixel: a sample from the product of
    the per-pixel empirical distributions."""
    rng = np.random.default_rng(rng)
    n, h, w = images.shape[:3]
    source = rng.integers(0, n, size=(h, w))
    rows, cols = np.indices((h, w))
    return images[source, rows, cols]


def gaussian_pixel_sample(images: np.ndarray, num: int, rng=None) -> np.ndarray:
    """Fit an independent Gaussian to every pixel-channel (mean and std over the set) and
    draw ``num`` images from it, clipped to uint8."""
    rng = np.random.default_rng(rng)
    x = images.astype(np.float64)
    mu, sigma = x.mean(axis=0), x.std(axis=0)
    draws = rng.normal(mu, sigma, size=(num, *images.shape[1:]))
    return np.clip(np.rint(draws), 0, 255).astype(np.uint8)


def conditional_chain(images: np.ndarray, attributes, steps, stat: str = "mean",
                      max_images: int | None = None):
    """Conditional faces for a growing list of conditions.

    ``steps`` is a list of ``(attribute, value)`` pairs; face k is conditioned on the first
    k+1 of them. Returns a list of ``(conditions, face, count)``; ``face`` is None when no
    image matches.
    """
    results, conditions = [], {}
    for name, value in steps:
        conditions = {**conditions, name: value}
        face, count = conditional_face(images, attributes, conditions, stat, max_images)
        results.append((dict(conditions), face, count))
    return results
