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


@keras.saving.register_keras_serializable(package="common")
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel upsampling: rearrange channels into space, (H, W, C) -> (H*r, W*r, C/r^2).

    out[y*r + i, x*r + j, c] = in[y, x, (i*r + j) * C/r^2 + c], i.e. ``depth_to_space``.
    A convolution to ``r^2 * f`` channels followed by this layer is an upsampling
    convolution without the checkerboard-prone zeros of a transposed convolution. No
    weights. Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network".
    """

    def __init__(self, scale: int = 2, **kwargs):
        super().__init__(**kwargs)
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % (self.scale ** 2):
            raise ValueError(f"PixelShuffle({self.scale}) needs channels divisible by "
                             f"{self.scale ** 2}, got {channels}")

    def call(self, inputs):
        return ops.depth_to_space(inputs, self.scale, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.scale
        return (b, None if h is None else h * r, None if w is None else w * r,
                None if c is None else c // (r * r))

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale)
        return config


__all__ += ["PixelShuffle"]


# --------------------------------------------------------------------------- Chapter 2: VAE

@keras.saving.register_keras_serializable(package="common")
class GaussianSampling(keras.layers.Layer):
    """Draw ``z ~ N(mean, exp(logvar))`` with the reparameterisation trick.

    Takes ``[mean, logvar]`` and returns ``mean + exp(0.5 * logvar) * noise_scale * eps`` with
    ``eps ~ N(0, I)`` from a :class:`keras.random.SeedGenerator`. The randomness sits in
    ``eps`` only, so ``z`` is an affine function of ``mean`` and ``logvar`` and gradients reach
    both: dz/dmean = 1, dz/dlogvar = 0.5 * sigma * eps. ``noise_scale=0`` returns the mean
    (deterministic, for tests and for encoding). No weights. Two layers built with the same
    integer ``seed`` draw the same noise. Kingma & Welling 2013, "Auto-Encoding Variational
    Bayes" (arXiv:1312.6114).
    """

    def __init__(self, seed=None, noise_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.noise_scale = float(noise_scale)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, logvar = inputs
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * logvar) * (self.noise_scale * eps)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed, noise_scale=self.noise_scale)
        return config


@keras.saving.register_keras_serializable(package="common")
class DownConvBlock(keras.layers.Layer):
    """3x3 convolution with stride 2 ('same' padding: H and W halve) -> batch normalization
    -> LeakyReLU(0.2). The down-sampling block of the Chapter 2 face VAE encoder."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.conv = keras.layers.Conv2D(self.filters, 3, strides=2, padding="same")
        self.norm = keras.layers.BatchNormalization()
        self.act = keras.layers.LeakyReLU(negative_slope=0.2)

    def build(self, input_shape):
        self.conv.build(input_shape)
        out = self.conv.compute_output_shape(input_shape)
        self.norm.build(out)

    def call(self, inputs, training=None):
        return self.act(self.norm(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@keras.saving.register_keras_serializable(package="common")
class UpConvBlock(keras.layers.Layer):
    """3x3 convolution with stride 1 -> LeakyReLU(0.2) -> UpSampling2D(2) (nearest
    neighbour, no weights): H and W double. The up-sampling block of the Chapter 2 face VAE
    decoder (fixed interpolation then a learned convolution avoids the checkerboard pattern
    of strided transposed convolutions; Odena et al. 2016, distill.pub)."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.conv = keras.layers.Conv2D(self.filters, 3, strides=1, padding="same")
        self.act = keras.layers.LeakyReLU(negative_slope=0.2)
        self.up = keras.layers.UpSampling2D(2)

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, inputs):
        return self.up(self.act(self.conv(inputs)))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


__all__ += ["GaussianSampling", "DownConvBlock", "UpConvBlock"]


# ============================================================================================
# Chapters 5-6: style layers (AdaIN, reflection-padded convolution, SPADE, SPADE residual block)
# ============================================================================================

def channel_moments(x, epsilon: float = 1e-5):
    """Per-sample, per-channel mean and standard deviation over the spatial axes (H, W) of a
    ``(B, H, W, C)`` tensor, both of shape ``(B, 1, 1, C)``; ``std = sqrt(var + epsilon)``.
    The statistics of instance normalisation (Ulyanov et al. 2016), shared by :class:`AdaIN`
    and the StyleGAN layers."""
    mean = ops.mean(x, axis=(1, 2), keepdims=True)
    var = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
    return mean, ops.sqrt(var + epsilon)


def instance_normalize(x, epsilon: float = 1e-5):
    """``(x - mean) / std`` with :func:`channel_moments`: zero mean and unit std per sample
    and channel, no learned parameters."""
    mean, std = channel_moments(x, epsilon)
    return (x - mean) / std


@keras.saving.register_keras_serializable(package="common")
class AdaIN(keras.layers.Layer):
    """Adaptive instance normalisation, ``AdaIN(x, y) = std(y) * (x - mean(x)) / std(x) + mean(y)``.

    Called on ``[content, style]`` feature maps ``(B, H, W, C)`` (their H, W may differ): the
    content features are normalised per sample and channel, then given the style features'
    per-channel mean and standard deviation. No weights: the style statistics play the part
    of batch norm's learned gamma and beta, so any style works at test time. Huang & Belongie
    2017, "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization".
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        content, style = inputs
        style_mean, style_std = channel_moments(style, self.epsilon)
        return style_std * instance_normalize(content, self.epsilon) + style_mean

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="common")
class ReflectionConv2D(keras.layers.Layer):
    """Stride-1 convolution that pads its input by reflection instead of zeros, so the border
    has no sudden step to zero (a source of high-frequency block artefacts in generated
    images). ``[10, 8, 9]`` padded by one becomes ``[8, 10, 8, 9, 8]``. Output keeps H and W.
    Used by the AdaIN decoder (Huang & Belongie 2017)."""

    def __init__(self, filters: int, kernel_size: int = 3, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.activation = keras.activations.get(activation)
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, padding="valid", name="conv")

    def build(self, input_shape):
        p = self.kernel_size // 2
        b, h, w, c = input_shape
        self.conv.build((b, None if h is None else h + 2 * p, None if w is None else w + 2 * p, c))

    def call(self, inputs):
        p = self.kernel_size // 2
        padded = ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")
        return self.activation(self.conv(padded))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      activation=keras.activations.serialize(self.activation))
        return config


@keras.saving.register_keras_serializable(package="common")
class SPADE(keras.layers.Layer):
    """Spatially-adaptive normalisation: ``SPADE(x, m) = norm(x) * (1 + gamma(m)) + beta(m)``.

    ``x`` is normalised without learned parameters (batch norm over (N, H, W) by default, as
    in the paper; ``norm='instance'`` for per-sample statistics). The segmentation map ``m``
    (one-hot ``(B, H', W', K)``) is resized to x's size by nearest neighbour, passed through a
    shared 3x3 conv with ReLU (``hidden`` filters), then two 3x3 convs give ``gamma`` and
    ``beta`` of shape ``(B, H, W, C)``: a different scale and shift at every pixel, so the
    map's layout survives normalisation. Park et al. 2019, "Semantic Image Synthesis with
    Spatially-Adaptive Normalization". Call as ``SPADE(C)(x, segmap)``.
    """

    def __init__(self, filters: int, hidden: int = 128, kernel_size: int = 3, norm: str = "batch",
                 epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        if norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
        self.filters, self.hidden, self.kernel_size = int(filters), int(hidden), int(kernel_size)
        self.norm, self.epsilon = norm, float(epsilon)
        self.shared = keras.layers.Conv2D(self.hidden, self.kernel_size, padding="same",
                                          activation="relu", name="shared")
        self.to_gamma = keras.layers.Conv2D(self.filters, self.kernel_size, padding="same",
                                            name="gamma")
        self.to_beta = keras.layers.Conv2D(self.filters, self.kernel_size, padding="same",
                                           name="beta")
        self.batch_norm = (keras.layers.BatchNormalization(center=False, scale=False,
                                                           epsilon=self.epsilon, name="norm")
                           if norm == "batch" else None)

    def build(self, inputs_shape, segmap_shape=None):
        input_shape = inputs_shape
        if input_shape[-1] is not None and input_shape[-1] != self.filters:
            raise ValueError(f"SPADE({self.filters}) got {input_shape[-1]} input channels")
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(input_shape)
        if segmap_shape is not None and not self.shared.built:
            b, h, w = input_shape[0], input_shape[1], input_shape[2]
            self.shared.build((b, h, w, segmap_shape[-1]))
            self.to_gamma.build((b, h, w, self.hidden))
            self.to_beta.build((b, h, w, self.hidden))

    def modulation(self, segmap, size):
        """``(gamma, beta)`` computed from ``segmap`` at spatial ``size`` (H, W)."""
        segmap = ops.image.resize(ops.cast(segmap, self.compute_dtype), size,
                                  interpolation="nearest")
        hidden = self.shared(segmap)
        return self.to_gamma(hidden), self.to_beta(hidden)

    def call(self, inputs, segmap, training=None):
        if self.batch_norm is not None:
            normalized = self.batch_norm(inputs, training=training)
        else:
            normalized = instance_normalize(inputs, self.epsilon)
        shape = ops.shape(inputs)
        gamma, beta = self.modulation(segmap, (shape[1], shape[2]))
        return normalized * (1.0 + gamma) + beta

    def compute_output_shape(self, inputs_shape, segmap_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, hidden=self.hidden, kernel_size=self.kernel_size,
                      norm=self.norm, epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="common")
class SPADEResBlock(keras.layers.Layer):
    """SPADE residual block (Park et al. 2019, Fig. 4): two SPADE -> LeakyReLU(0.2) -> 3x3 conv
    layers on the main path, added to the input. When the channel count changes the skip
    path is learned: SPADE -> 1x1 conv without bias (as in the paper; the book's version uses
    a 3x3 conv with a LeakyReLU there). Every SPADE sees the segmentation map. Call as
    ``SPADEResBlock(filters)(x, segmap)``."""

    def __init__(self, filters: int, input_channels: int, hidden: int = 128, norm: str = "batch",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.input_channels = int(filters), int(input_channels)
        self.hidden, self.norm = int(hidden), norm
        self.spade_1 = SPADE(self.input_channels, hidden, norm=norm, name="spade_1")
        self.conv_1 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv_1")
        self.spade_2 = SPADE(self.filters, hidden, norm=norm, name="spade_2")
        self.conv_2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv_2")
        self.learned_skip = self.filters != self.input_channels
        if self.learned_skip:
            self.spade_skip = SPADE(self.input_channels, hidden, norm=norm, name="spade_skip")
            self.conv_skip = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="conv_skip")

    def build(self, inputs_shape, segmap_shape=None):
        input_shape = inputs_shape
        b, h, w, _ = input_shape
        out = (b, h, w, self.filters)
        self.spade_1.build(input_shape, segmap_shape)
        self.conv_1.build(input_shape)
        self.spade_2.build(out, segmap_shape)
        self.conv_2.build(out)
        if self.learned_skip:
            self.spade_skip.build(input_shape, segmap_shape)
            self.conv_skip.build(input_shape)

    def call(self, inputs, segmap, training=None):
        x = self.conv_1(ops.leaky_relu(self.spade_1(inputs, segmap, training=training), 0.2))
        x = self.conv_2(ops.leaky_relu(self.spade_2(x, segmap, training=training), 0.2))
        skip = inputs
        if self.learned_skip:
            skip = self.conv_skip(self.spade_skip(inputs, segmap, training=training))
        return skip + x

    def compute_output_shape(self, inputs_shape, segmap_shape=None):
        return (*inputs_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, input_channels=self.input_channels,
                      hidden=self.hidden, norm=self.norm)
        return config


__all__ += ["channel_moments", "instance_normalize", "AdaIN", "ReflectionConv2D", "SPADE",
            "SPADEResBlock"]


# ============================================================================================
# Chapters 7 and 8: layers of ProGAN, StyleGAN, SAGAN and BigGAN
# (PixelNorm, MinibatchStdDev, equalized learning rate, fade-in, noise injection, style AdaIN,
#  learned constant, mapping network, power iteration / spectral norm, self-attention,
#  conditional batch normalization)
# ============================================================================================

def _leaky(x, slope: float = 0.2):
    return ops.leaky_relu(x, negative_slope=slope)


@keras.saving.register_keras_serializable(package="common")
class PixelNorm(keras.layers.Layer):
    """Pixelwise feature normalisation of ProGAN (Karras et al. 2018, "Progressive Growing of
    GANs", arXiv 1710.10196, sec. 4.2): ``b = a / sqrt(mean_c(a_c^2) + epsilon)``.

    Every pixel's feature vector is scaled to unit root mean square over the channel axis
    only. No weights. Computed in float32 (1e-8 underflows in float16) and cast back.
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        scale = ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(x * scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="common")
class MinibatchStdDev(keras.layers.Layer):
    """Minibatch standard deviation of ProGAN (Karras et al. 2018, sec. 3): one extra channel
    telling the discriminator how varied the samples of a small group are.

    The batch of N is split into G groups' worth of members by reshaping to
    ``(G, N/G, H, W, C)``: sample ``n = g*(N/G) + m`` belongs to group ``m``. For each group the
    population std over its G members (``sqrt(var + epsilon)``) is averaged over (H, W, C) into
    one number, which is broadcast to an (H, W, 1) map for every member and concatenated:
    output ``(N, H, W, C+1)``. ``G = min(group_size, N)``, or the largest divisor of N below it
    when N is not divisible (the batch size may be dynamic).
    """

    def __init__(self, group_size: int = 4, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.group_size, self.epsilon = int(group_size), float(epsilon)

    def _group(self, n):
        sizes = ops.arange(self.group_size, 0, -1, dtype="int32")
        fits = ops.logical_and(ops.equal(n % sizes, 0), sizes <= n)
        return ops.take(sizes, ops.argmax(ops.cast(fits, "int32")))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        g = self._group(ops.cast(n, "int32"))
        grouped = ops.reshape(x, (g, -1, shape[1], shape[2], shape[3]))
        var = ops.mean(ops.square(grouped - ops.mean(grouped, axis=0, keepdims=True)), axis=0)
        std = ops.mean(ops.sqrt(var + self.epsilon), axis=(1, 2, 3))  # (N/G,)
        per_sample = ops.tile(std, (g,))  # sample g*(N/G)+m gets group m's value
        extra = ops.broadcast_to(ops.reshape(per_sample, (-1, 1, 1, 1)), (n, h, w, 1))
        return ops.cast(ops.concatenate([x, extra], axis=-1), inputs.dtype)

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (*input_shape[:-1], None if c is None else c + 1)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="common")
class EqualizedDense(keras.layers.Layer):
    """Dense layer with the equalized learning rate of ProGAN (Karras et al. 2018, sec. 4.1).

    The stored kernel is drawn from N(0, 1/lrmul^2) and multiplied at run time by
    ``c = sqrt(gain / fan_in) * lrmul`` (He's constant), the bias by ``lrmul``. With Adam, whose
    step size ignores the gradient's scale, every layer then learns at the same relative
    speed. ``lrmul < 1`` slows a layer down (StyleGAN's mapping network uses 0.01; Karras et
    al. 2019, "A Style-Based Generator Architecture for GANs", arXiv 1812.04948).
    """

    def __init__(self, units: int, gain: float = 2.0, lrmul: float = 1.0, use_bias: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.units, self.gain, self.lrmul = int(units), float(gain), float(lrmul)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.scale = float(np.sqrt(self.gain / fan_in) * self.lrmul)
        self.kernel = self.add_weight(
            name="kernel", shape=(fan_in, self.units),
            initializer=keras.initializers.RandomNormal(0.0, 1.0 / self.lrmul))
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
                     if self.use_bias else None)

    def call(self, inputs):
        out = ops.matmul(inputs, ops.cast(self.kernel, self.compute_dtype) * self.scale)
        if self.bias is not None:
            out = out + ops.cast(self.bias, self.compute_dtype) * self.lrmul
        return out

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "gain": self.gain,
                "lrmul": self.lrmul, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="common")
class EqualizedConv2D(keras.layers.Layer):
    """2-D convolution with ProGAN's equalized learning rate (Karras et al. 2018, sec. 4.1).

    ``y = conv(pad(x), w * sqrt(gain / (k*k*C_in)) * lrmul, VALID) + b * lrmul``, stride 1,
    with w stored as N(0, 1/lrmul^2). ``pad`` adds (k-1)/2 pixels on each side (reflect, as in
    the book, to avoid dark borders; or ``'zero'``), so the spatial size is kept.
    """

    def __init__(self, filters: int, kernel_size: int = 3, gain: float = 2.0, lrmul: float = 1.0,
                 padding: str = "reflect", **kwargs):
        super().__init__(**kwargs)
        if int(kernel_size) % 2 == 0:
            raise ValueError("EqualizedConv2D needs an odd kernel size")
        if padding not in ("reflect", "zero"):
            raise ValueError(f"padding must be 'reflect' or 'zero', got {padding!r}")
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.gain, self.lrmul, self.padding = float(gain), float(lrmul), padding

    def build(self, input_shape):
        c_in = int(input_shape[-1])
        k = self.kernel_size
        self.scale = float(np.sqrt(self.gain / (k * k * c_in)) * self.lrmul)
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, c_in, self.filters),
            initializer=keras.initializers.RandomNormal(0.0, 1.0 / self.lrmul))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        p = (self.kernel_size - 1) // 2
        x = inputs
        if p:
            mode = "reflect" if self.padding == "reflect" else "constant"
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode=mode)
        kernel = ops.cast(self.kernel, self.compute_dtype) * self.scale
        out = ops.conv(x, kernel, strides=1, padding="valid")
        return out + ops.cast(self.bias, self.compute_dtype) * self.lrmul

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "gain": self.gain, "lrmul": self.lrmul,
                "padding": self.padding}


class FadeIn(keras.layers.Layer):
    """Fade-in of a newly added resolution (Karras et al. 2018, sec. 3):
    ``call([new, old]) = alpha * new + (1 - alpha) * old``.

    ``alpha`` is a non-trainable scalar ``keras.Variable`` owned by the training model and
    shared by generator and discriminator, assigned in-graph so nothing is retraced.
    """

    def __init__(self, alpha_variable, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha_variable

    def call(self, inputs):
        new, old = inputs
        a = ops.cast(self.alpha, new.dtype)
        return a * new + (1.0 - a) * old

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="common")
class NoiseInjection(keras.layers.Layer):
    """StyleGAN's per-pixel noise (Karras et al. 2019, sec. 2): ``x + B * n`` with one noise
    map ``n ~ N(0, 1)`` of shape (B, H, W, 1) broadcast over channels and a learned
    per-channel scale B initialised to zero. ``call(x, noise=None)`` (or ``call([x, noise])``
    in a functional model) draws fresh noise when none is given."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        self.noise_scale = self.add_weight(name="noise_scale", shape=(int(input_shape[-1]),),
                                           initializer="zeros")

    def call(self, inputs, noise=None):
        if isinstance(inputs, (list, tuple)):  # functional use: [x, noise]
            inputs, noise = inputs
        if noise is None:
            s = ops.shape(inputs)
            noise = keras.random.normal((s[0], s[1], s[2], 1), seed=self.seed_generator,
                                        dtype=self.compute_dtype)
        return inputs + ops.cast(noise, inputs.dtype) * ops.cast(self.noise_scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            return input_shape[0]
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="common")
class StyleAdaIN(keras.layers.Layer):
    """StyleGAN's style modulation (Karras et al. 2019, eq. 1): ``call([x, w])`` instance-
    normalises x over (H, W) and returns ``y_s * x_hat + y_b`` with ``y_s = 1 + A_s(w)`` and
    ``y_b = A_b(w)``, A_s and A_b equalized dense layers (gain 1) of w. The output's
    per-sample, per-channel mean is ``y_b`` and its std ``|y_s|``. The normalisation is
    :func:`instance_normalize` (the core of :class:`AdaIN`), computed in float32."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        x_shape, w_shape = input_shape
        c = int(x_shape[-1])
        self.style_scale = EqualizedDense(c, gain=1.0, name="style_scale")
        self.style_bias = EqualizedDense(c, gain=1.0, name="style_bias")
        self.style_scale.build(w_shape)
        self.style_bias.build(w_shape)

    def styles(self, w):
        """``(y_s, y_b)`` of shape (B, C) for style vectors w (B, w_dim)."""
        return 1.0 + self.style_scale(w), self.style_bias(w)

    def call(self, inputs):
        x, w = inputs
        y_s, y_b = self.styles(w)
        y_s = ops.cast(y_s, x.dtype)[:, None, None, :]
        y_b = ops.cast(y_b, x.dtype)[:, None, None, :]
        x_hat = ops.cast(instance_normalize(ops.cast(x, "float32"), self.epsilon), x.dtype)
        return y_s * x_hat + y_b

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="common")
class LearnedConstant(keras.layers.Layer):
    """StyleGAN's learned 4x4 input (Karras et al. 2019, sec. 2): a trainable tensor of
    ``shape`` initialised to ones, tiled to the batch size of the reference input."""

    def __init__(self, shape=(4, 4, 512), **kwargs):
        super().__init__(**kwargs)
        self.const_shape = tuple(int(s) for s in shape)

    def build(self, input_shape):
        self.const = self.add_weight(name="const", shape=self.const_shape, initializer="ones")

    def call(self, reference):
        n = ops.shape(reference)[0]
        c = ops.cast(self.const, self.compute_dtype)[None]
        return ops.tile(c, (n,) + (1,) * len(self.const_shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.const_shape)

    def get_config(self):
        return {**super().get_config(), "shape": self.const_shape}


@keras.saving.register_keras_serializable(package="common")
class MappingNetwork(keras.layers.Layer):
    """StyleGAN's mapping network f: z -> w (Karras et al. 2019, sec. 2): PixelNorm(z), then
    ``n_layers`` x [EqualizedDense(w_dim, lrmul) + LeakyReLU(0.2)]; lrmul 0.01 makes it learn
    100x slower than the synthesis network. With ``n_broadcast`` the output is tiled to
    ``(B, n_broadcast, w_dim)``: one copy of w per synthesis block."""

    def __init__(self, w_dim: int = 512, n_layers: int = 8, lrmul: float = 0.01,
                 n_broadcast: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.w_dim, self.n_layers, self.lrmul = int(w_dim), int(n_layers), float(lrmul)
        self.n_broadcast = None if n_broadcast is None else int(n_broadcast)
        self.norm = PixelNorm()
        self.dense = [EqualizedDense(self.w_dim, lrmul=self.lrmul, name=f"dense_{i}")
                      for i in range(self.n_layers)]

    def build(self, input_shape):
        shape = input_shape
        for layer in self.dense:
            layer.build(shape)
            shape = (*shape[:-1], self.w_dim)

    def call(self, z):
        x = self.norm(z)
        for layer in self.dense:
            x = _leaky(layer(x))
        if self.n_broadcast is not None:
            x = ops.repeat(x[:, None, :], self.n_broadcast, axis=1)
        return x

    def compute_output_shape(self, input_shape):
        if self.n_broadcast is None:
            return (input_shape[0], self.w_dim)
        return (input_shape[0], self.n_broadcast, self.w_dim)

    def get_config(self):
        return {**super().get_config(), "w_dim": self.w_dim, "n_layers": self.n_layers,
                "lrmul": self.lrmul, "n_broadcast": self.n_broadcast}


def power_iteration(w, u=None, n_iter: int = 5, seed=None):
    """Estimate the spectral norm (largest singular value) of a kernel by power iteration
    (Miyato et al. 2018, "Spectral Normalization for GANs", arXiv 1802.05957, Alg. 1).

    The kernel is reshaped to W of shape (fan_in, C_out) (for a conv: (k*k*C_in, C_out)).
    Starting from ``u`` (shape (fan_in, 1); N(0, 1) when None), repeat ``v = W^T u / |W^T u|``,
    ``u = W v / |W v|``; then ``sigma = u^T W v``. Returns ``(sigma, u)``: pass u back in to
    warm-start the next call, which is why one iteration per training step suffices.
    """
    w = ops.convert_to_tensor(w, dtype="float32")
    mat = ops.reshape(w, (-1, ops.shape(w)[-1]))
    if u is None:
        u = keras.random.normal((ops.shape(mat)[0], 1), seed=seed)
    u = ops.convert_to_tensor(u, dtype="float32")
    v = None
    for _ in range(max(int(n_iter), 1)):
        v = ops.matmul(ops.transpose(mat), u)
        v = v / (ops.norm(v) + 1e-12)
        u = ops.matmul(mat, v)
        u = u / (ops.norm(u) + 1e-12)
    sigma = ops.matmul(ops.transpose(u), ops.matmul(mat, v))[0, 0]
    return sigma, u


def spectral_norm(layer, enabled: bool = True):
    """Wrap a Conv2D or Dense in ``keras.layers.SpectralNormalization(power_iterations=1)``
    (Miyato et al. 2018). In calls with ``training=True`` the wrapper runs one warm-started
    power iteration and assigns ``W <- W / sigma`` in place; inference calls leave W alone.
    Do not wrap an ``Embedding``: in Keras 3.15 the wrapper casts its output to the integer
    dtype of the labels. ``enabled=False`` returns the layer unchanged."""
    if not enabled:
        return layer
    if isinstance(layer, keras.layers.Embedding):
        raise ValueError("spectral_norm(Embedding) is broken in Keras 3 (returns zeros); "
                         "leave the embedding unnormalised")
    return keras.layers.SpectralNormalization(layer, power_iterations=1)


@keras.saving.register_keras_serializable(package="common")
class SelfAttention(keras.layers.Layer):
    """Self-attention module of SAGAN (Zhang et al. 2019, "Self-Attention Generative
    Adversarial Networks", arXiv 1805.08318, sec. 3), with BigGAN's pooled keys and values.

    For x of shape (B, H, W, C): query theta = conv1x1(x) -> (B, HW, C/8); key phi =
    maxpool2(conv1x1(x)) -> (B, HW/4, C/8); value g = maxpool2(conv1x1(x)) -> (B, HW/4, C/2);
    ``A = softmax(theta phi^T)`` over the pooled positions, (B, HW, HW/4), rows summing to 1;
    ``o = conv1x1(reshape(A g))`` with C channels; ``y = x + gamma * o``, gamma a learned
    scalar starting at 0, so the layer starts as the identity. The four 1x1 convolutions are
    spectrally normalised unless ``spectral=False``. ``call(x, training, return_attention)``.
    """

    def __init__(self, key_reduction: int = 8, value_reduction: int = 2, pool: int = 2,
                 spectral: bool = True, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.key_reduction, self.value_reduction = int(key_reduction), int(value_reduction)
        self.pool, self.spectral = int(pool), bool(spectral)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _conv(self, filters, name):
        conv = keras.layers.Conv2D(filters, 1, name=name,
                                   kernel_initializer=self.kernel_initializer,
                                   kernel_regularizer=self.kernel_regularizer)
        return spectral_norm(conv, self.spectral)

    def build(self, input_shape):
        _, h, w, c = input_shape
        if h is None or w is None or h % self.pool or w % self.pool:
            raise ValueError(f"SelfAttention needs static H, W divisible by {self.pool}, "
                             f"got {input_shape}")
        self.h, self.w, self.c = int(h), int(w), int(c)
        self.ck, self.cv = self.c // self.key_reduction, self.c // self.value_reduction
        self.theta = self._conv(self.ck, "theta")
        self.phi = self._conv(self.ck, "phi")
        self.g = self._conv(self.cv, "g")
        self.out = self._conv(self.c, "out")
        for conv in (self.theta, self.phi, self.g):
            conv.build(input_shape)
        self.out.build((input_shape[0], h, w, self.cv))
        self.gamma = self.add_weight(name="gamma", shape=(1,), initializer="zeros")

    def _pool(self, x):
        return ops.max_pool(x, self.pool, strides=self.pool, padding="valid")

    def call(self, inputs, training=None, return_attention=False):
        hw, hw_pooled = self.h * self.w, (self.h // self.pool) * (self.w // self.pool)
        theta = ops.reshape(self.theta(inputs, training=training), (-1, hw, self.ck))
        phi = ops.reshape(self._pool(self.phi(inputs, training=training)), (-1, hw_pooled, self.ck))
        g = ops.reshape(self._pool(self.g(inputs, training=training)), (-1, hw_pooled, self.cv))
        logits = ops.matmul(theta, ops.transpose(phi, (0, 2, 1)))
        attention = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), inputs.dtype)
        o = ops.reshape(ops.matmul(attention, g), (-1, self.h, self.w, self.cv))
        y = inputs + ops.cast(self.gamma, inputs.dtype) * self.out(o, training=training)
        return (y, attention) if return_attention else y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "key_reduction": self.key_reduction,
                "value_reduction": self.value_reduction, "pool": self.pool,
                "spectral": self.spectral,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


@keras.saving.register_keras_serializable(package="common")
class ConditionalBatchNorm(keras.layers.Layer):
    """Class-conditional batch normalization (de Vries et al. 2017; used by SAGAN, Zhang et
    al. 2019, and BigGAN, Brock et al. 2019, arXiv 1809.11096).

    ``x_hat`` is x normalised by an inner ``BatchNormalization(center=False, scale=False)``
    (batch statistics over (N, H, W) when ``training``, moving averages otherwise); the
    output is ``gamma_c * x_hat + beta_c``.

    - Table mode (``num_classes`` given; SAGAN): ``call([x, labels])``, gamma and beta are
      rows of (num_classes, C) tables (init ones / zeros) picked by the integer labels.
    - Dense mode (``num_classes=None``; BigGAN): ``call([x, cond])``, ``gamma = gamma_offset
      + Dense(C)(cond)`` and ``beta = Dense(C)(cond)`` from a condition vector (shared class
      embedding joined with a chunk of z); the dense layers are spectrally normalised unless
      ``spectral=False`` and take ``kernel_initializer`` / ``kernel_regularizer``.
    """

    def __init__(self, num_classes: int | None = None, momentum: float = 0.9,
                 epsilon: float = 1e-5, gamma_offset: float = 1.0, spectral: bool = True,
                 kernel_initializer="orthogonal", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.gamma_offset, self.spectral = float(gamma_offset), bool(spectral)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bn = keras.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon,
                                                  center=False, scale=False, name="bn")

    def build(self, input_shape):
        x_shape, cond_shape = input_shape
        c = int(x_shape[-1])
        self.bn.build(x_shape)
        if self.num_classes is not None:
            self.gamma = self.add_weight(name="gamma", shape=(self.num_classes, c),
                                         initializer="ones")
            self.beta = self.add_weight(name="beta", shape=(self.num_classes, c),
                                        initializer="zeros")
        else:
            def dense(name):
                return spectral_norm(keras.layers.Dense(
                    c, name=name, kernel_initializer=self.kernel_initializer,
                    kernel_regularizer=self.kernel_regularizer), self.spectral)
            self.gamma_dense, self.beta_dense = dense("gamma_dense"), dense("beta_dense")
            self.gamma_dense.build(cond_shape)
            self.beta_dense.build(cond_shape)

    def call(self, inputs, training=None):
        x, cond = inputs
        x_hat = self.bn(x, training=training)
        if self.num_classes is not None:
            labels = ops.reshape(ops.cast(cond, "int32"), (-1,))
            gamma, beta = ops.take(self.gamma, labels, axis=0), ops.take(self.beta, labels, axis=0)
        else:
            gamma = self.gamma_offset + self.gamma_dense(cond, training=training)
            beta = self.beta_dense(cond, training=training)
        gamma = ops.cast(gamma, x_hat.dtype)[:, None, None, :]
        beta = ops.cast(beta, x_hat.dtype)[:, None, None, :]
        return gamma * x_hat + beta

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "momentum": self.momentum, "epsilon": self.epsilon,
                "gamma_offset": self.gamma_offset, "spectral": self.spectral,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


__all__ += ["PixelNorm", "MinibatchStdDev", "EqualizedDense", "EqualizedConv2D", "FadeIn",
            "NoiseInjection", "StyleAdaIN", "LearnedConstant",
            "MappingNetwork", "power_iteration", "spectral_norm", "SelfAttention",
            "ConditionalBatchNorm"]


# ============================================================================================
# Chapter 4: image-to-image translation (instance normalisation, tiled latent code)
# ============================================================================================

@keras.saving.register_keras_serializable(package="common")
class InstanceNormalization(keras.layers.GroupNormalization):
    """Instance normalisation: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    The mean and variance are taken per sample and per channel over the spatial axes (H, W)
    of a ``(B, H, W, C)`` tensor, so no sample's output depends on the rest of the batch and
    training and inference compute the same thing (no moving statistics). ``gamma`` (init 1)
    and ``beta`` (init 0) have one value per channel: 2C parameters. This is Keras 3's
    ``GroupNormalization`` with one channel per group, which is exactly how the retired
    ``tensorflow_addons.layers.InstanceNormalization`` was defined (same epsilon, 1e-3).
    Ulyanov et al. 2016, "Instance Normalization: The Missing Ingredient for Fast Stylization".
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        kwargs.pop("groups", None)  # a saved config carries the resolved group count
        super().__init__(groups=-1, epsilon=epsilon, **kwargs)


@keras.saving.register_keras_serializable(package="common")
class TileLatent(keras.layers.Layer):
    """Repeat a latent code over an image grid: called on ``[z, reference]`` with ``z`` of
    shape ``(B, d)`` and ``reference`` of shape ``(B, H, W, C)``, returns ``(B, H, W, d)`` with
    ``out[b, i, j, :] == z[b]`` at every position. BicycleGAN (Zhu et al. 2017, "Toward
    Multimodal Image-to-Image Translation") concatenates this to the input image so every
    pixel of the generator's input carries the code. Implemented by broadcasting, so the
    batch size is preserved (the book's ``tf.tile`` multiples squared it). No weights."""

    def call(self, inputs):
        z, reference = inputs
        z = ops.cast(z, self.compute_dtype)
        grid = ops.zeros_like(ops.cast(reference[..., :1], self.compute_dtype))
        return grid + z[:, None, None, :]

    def compute_output_shape(self, input_shape):
        z_shape, ref_shape = input_shape
        return (ref_shape[0], ref_shape[1], ref_shape[2], z_shape[-1])


__all__ += ["InstanceNormalization", "TileLatent"]
