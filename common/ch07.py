"""Chapter 7: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import tensorflow as tf
import math
from pathlib import Path
from keras import layers, ops
from common.ch03 import gradient_penalty
from common.ch05 import instance_normalize


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


def drift_penalty(real_out, fake_out, weight: float = 1e-3):
    """ProGAN's drift term ``weight * mean(D^2)`` over the real and fake scores together
    (as the book does; the paper, Karras et al. 2018, uses the real scores only). It keeps a
    Wasserstein critic's outputs from drifting far from zero."""
    real_out = ops.convert_to_tensor(real_out)
    both = ops.concatenate([ops.reshape(real_out, (-1,)),
                            ops.reshape(ops.cast(fake_out, real_out.dtype), (-1,))], axis=0)
    return weight * ops.mean(ops.square(both))


#: Feature maps per resolution (book, = paper's CelebA-HQ network).
FILTERS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


#: Batch size per resolution (book): 16 up to 64x64, then halved per doubling.
BATCH_SIZES = {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 8, 256: 4, 512: 2, 1024: 1}


def resolutions(target_res: int, start_res: int = 4) -> list[int]:
    """``[start_res, 2*start_res, ..., target_res]`` (powers of two)."""
    if target_res < start_res or target_res & (target_res - 1) or start_res & (start_res - 1):
        raise ValueError(f"resolutions must be powers of two with start <= target, got "
                         f"{start_res}, {target_res}")
    out, r = [], start_res
    while r <= target_res:
        out.append(r)
        r *= 2
    return out


def filters_at(res: int, max_filters: int = 512, table=None) -> int:
    """Width of the blocks at ``res``: the table's value capped at ``max_filters``."""
    return min(int((table or FILTERS)[res]), int(max_filters))


def _lrelu(x):
    return layers.LeakyReLU(0.2)(x)


def to_rgb(filters: int, res: int) -> keras.Model:
    """1x1 equalized convolution to 3 channels, gain 1, **linear** output (the book's tanh was
    never applied, because its layer dropped the ``activation`` argument)."""
    x = keras.Input((res, res, filters))
    return keras.Model(x, EqualizedConv2D(3, 1, gain=1.0)(x), name=f"to_rgb_{res}")


def from_rgb(filters: int, res: int) -> keras.Model:
    """1x1 equalized convolution from RGB to ``filters`` channels + LeakyReLU(0.2)."""
    x = keras.Input((res, res, 3))
    return keras.Model(x, _lrelu(EqualizedConv2D(filters, 1)(x)), name=f"from_rgb_{res}")


def progan_generator_base(z_dim: int = 512, filters: int = 512) -> keras.Model:
    """4x4 base: PixelNorm(z) -> EqualizedDense(16*F, gain 1/8) -> (4, 4, F) -> LReLU ->
    PixelNorm -> Conv 3x3 -> LReLU -> PixelNorm (6,562,304 parameters at z 512, F 512)."""
    z = keras.Input((z_dim,))
    x = EqualizedDense(16 * filters, gain=1.0 / 8)(PixelNorm()(z))
    x = PixelNorm()(_lrelu(layers.Reshape((4, 4, filters))(x)))
    x = PixelNorm()(_lrelu(EqualizedConv2D(filters, 3)(x)))
    return keras.Model(z, x, name="g_block_4")


def progan_generator_block(res: int, filters: int, in_filters: int) -> keras.Model:
    """Upsample x2 (nearest) -> 2 x [Conv 3x3 -> LReLU -> PixelNorm]."""
    x_in = keras.Input((res // 2, res // 2, in_filters))
    x = layers.UpSampling2D(2)(x_in)
    for _ in range(2):
        x = PixelNorm()(_lrelu(EqualizedConv2D(filters, 3)(x)))
    return keras.Model(x_in, x, name=f"g_block_{res}")


def progan_discriminator_block(res: int, filters: int, out_filters: int) -> keras.Model:
    """Conv 3x3 F_r -> LReLU -> Conv 3x3 F_{r/2} -> LReLU -> AvgPool 2 (no normalisation)."""
    x_in = keras.Input((res, res, filters))
    x = _lrelu(EqualizedConv2D(filters, 3)(x_in))
    x = _lrelu(EqualizedConv2D(out_filters, 3)(x))
    return keras.Model(x_in, layers.AveragePooling2D(2)(x), name=f"d_block_{res}")


def progan_discriminator_base(filters: int = 512) -> keras.Model:
    """4x4 base: MinibatchStdDev -> Conv 3x3 -> LReLU -> Flatten -> Dense F -> LReLU ->
    Dense 1 (linear critic score; 6,559,745 parameters at F 512)."""
    x_in = keras.Input((4, 4, filters))
    x = _lrelu(EqualizedConv2D(filters, 3)(MinibatchStdDev()(x_in)))
    x = _lrelu(EqualizedDense(filters)(layers.Flatten()(x)))
    return keras.Model(x_in, EqualizedDense(1)(x), name="d_block_4")


class _Progressive(keras.Model):
    """Shared bookkeeping: current resolution, fade flag and the alpha variable."""

    def _init_progressive(self, target_res, alpha):
        self.resolutions = resolutions(target_res)
        self.target_res = int(target_res)
        self.alpha = alpha if alpha is not None else keras.Variable(
            1.0, trainable=False, name="alpha", dtype="float32")
        self.fade_layer = FadeIn(self.alpha, name="fade_in")
        self.res, self.fade = 4, False
        self.built = True  # every block is built when it is made (weights can be loaded at once)

    def build(self, input_shape=None):
        # The blocks are functional models built when they are made; nothing else to build.
        self.built = True

    @property
    def level(self) -> int:
        """Index of the current resolution in :attr:`resolutions`."""
        return self.resolutions.index(self.res)

    def set_resolution(self, res: int, fade: bool = False) -> None:
        """Run the blocks up to ``res``; with ``fade`` blend in the new block (``alpha``)."""
        if res not in self.resolutions:
            raise ValueError(f"resolution {res} not in {self.resolutions}")
        self.res, self.fade = int(res), bool(fade) and res > self.resolutions[0]


class ProGANGenerator(_Progressive):
    """ProGAN generator grown from 4x4 to ``target_res``. ``call(z)`` returns images at the
    current resolution; during a fade-in ``alpha * to_rgb(new block) + (1 - alpha) *
    upsample(to_rgb(previous))``. Outputs are linear (clip to [-1, 1] for display)."""

    def __init__(self, target_res: int = 64, z_dim: int = 512, max_filters: int = 512,
                 filter_table=None, alpha=None, name: str = "progan_generator", **kwargs):
        super().__init__(name=name, **kwargs)
        self._init_progressive(target_res, alpha)
        self.z_dim = int(z_dim)
        f = [filters_at(r, max_filters, filter_table) for r in self.resolutions]
        self.blocks = [progan_generator_base(self.z_dim, f[0])] + [
            progan_generator_block(r, f[i], f[i - 1])
            for i, r in enumerate(self.resolutions) if i > 0]
        self.rgb = [to_rgb(f[i], r) for i, r in enumerate(self.resolutions)]
        self.upsample = layers.UpSampling2D(2)

    def active_variables(self):
        """Trainable variables used at the current resolution and phase."""
        parts = self.blocks[:self.level + 1] + [self.rgb[self.level]]
        if self.fade:
            parts.append(self.rgb[self.level - 1])
        return [v for p in parts for v in p.trainable_variables]

    def call(self, z, training=False):
        x = self.blocks[0](z, training=training)
        old = None
        for i in range(1, self.level + 1):
            if i == self.level and self.fade:
                old = self.upsample(self.rgb[i - 1](x))
            x = self.blocks[i](x, training=training)
        image = self.rgb[self.level](x)
        return self.fade_layer([image, old]) if old is not None else image


class ProGANDiscriminator(_Progressive):
    """ProGAN discriminator (critic) for images at the current resolution. During a fade-in
    the new block's output is blended with ``from_rgb_{r-1}(avgpool(x))``."""

    def __init__(self, target_res: int = 64, max_filters: int = 512, filter_table=None,
                 alpha=None, name: str = "progan_discriminator", **kwargs):
        super().__init__(name=name, **kwargs)
        self._init_progressive(target_res, alpha)
        f = [filters_at(r, max_filters, filter_table) for r in self.resolutions]
        self.blocks = [progan_discriminator_base(f[0])] + [
            progan_discriminator_block(r, f[i], f[i - 1])
            for i, r in enumerate(self.resolutions) if i > 0]
        self.from_rgb = [from_rgb(f[i], r) for i, r in enumerate(self.resolutions)]
        self.downsample = layers.AveragePooling2D(2)

    def active_variables(self):
        parts = self.blocks[:self.level + 1] + [self.from_rgb[self.level]]
        if self.fade:
            parts.append(self.from_rgb[self.level - 1])
        return [v for p in parts for v in p.trainable_variables]

    def call(self, images, training=False):
        x = self.blocks[self.level](self.from_rgb[self.level](images), training=training)
        if self.fade:
            old = self.from_rgb[self.level - 1](self.downsample(images))
            x = self.fade_layer([x, old])
        for i in range(self.level - 1, -1, -1):
            x = self.blocks[i](x, training=training)
        return x


def build_progan(target_res: int = 64, z_dim: int = 512, max_filters: int = 512,
                 filter_table=None):
    """``(generator, discriminator)`` sharing one fade-in ``alpha`` variable."""
    alpha = keras.Variable(1.0, trainable=False, name="alpha", dtype="float32")
    g = ProGANGenerator(target_res, z_dim, max_filters, filter_table, alpha=alpha)
    d = ProGANDiscriminator(target_res, max_filters, filter_table, alpha=alpha)
    return g, d


def _style_layer(x, w, noise):
    """Noise -> LReLU -> StyleAdaIN: the tail of every StyleGAN convolution."""
    x = NoiseInjection()([x, noise])
    return StyleAdaIN()([_lrelu(x), w])


def stylegan_base_block(filters: int = 512, w_dim: int = 512) -> keras.Model:
    """4x4 synthesis block: inputs ``[w, noise (4, 4, 1)]``; LearnedConstant -> Noise -> LReLU
    -> AdaIN -> Conv 3x3 -> Noise -> LReLU -> AdaIN (3,419,648 parameters at F = w = 512)."""
    w = keras.Input((w_dim,))
    noise = keras.Input((4, 4, 1))
    x = _style_layer(LearnedConstant((4, 4, filters))(w), w, noise)
    x = _style_layer(EqualizedConv2D(filters, 3)(x), w, noise)
    return keras.Model([w, noise], x, name="synthesis_4")


def stylegan_synthesis_block(res: int, filters: int, in_filters: int,
                             w_dim: int = 512) -> keras.Model:
    """Synthesis block at ``res``: inputs ``[x, w, noise (res, res, 1)]``; Upsample -> 2 x
    [Conv 3x3 -> Noise -> LReLU -> AdaIN]. One noise map per block, each injection with its
    own per-channel scale (book)."""
    x_in = keras.Input((res // 2, res // 2, in_filters))
    w = keras.Input((w_dim,))
    noise = keras.Input((res, res, 1))
    x = layers.UpSampling2D(2)(x_in)
    x = _style_layer(EqualizedConv2D(filters, 3)(x), w, noise)
    x = _style_layer(EqualizedConv2D(filters, 3)(x), w, noise)
    return keras.Model([x_in, w, noise], x, name=f"synthesis_{res}")


def mix_styles(w_a, w_b, crossover):
    """Style mixing of per-block styles ``(B, n_blocks, w_dim)``: blocks ``< crossover`` take
    ``w_a``, the others ``w_b`` (``crossover`` may be a tensor)."""
    w_a = ops.convert_to_tensor(w_a)
    n_blocks = ops.shape(w_a)[1]
    take_a = ops.arange(n_blocks) < ops.cast(crossover, "int32")
    return ops.where(take_a[None, :, None], w_a, ops.cast(w_b, w_a.dtype))


def truncate(w, w_avg, psi: float = 0.7, cutoff: int | None = None):
    """Truncation trick (Karras et al. 2019, appendix B): ``w_avg + psi * (w - w_avg)``, on
    the blocks ``< cutoff`` only (all blocks when None). w is ``(B, n_blocks, w_dim)``.
    psi = 1 leaves w unchanged, psi = 0 gives every sample the average style."""
    w = ops.convert_to_tensor(w)
    w_avg = ops.cast(ops.reshape(w_avg, (1, 1, -1)), w.dtype)
    moved = w_avg + psi * (w - w_avg)
    if cutoff is None:
        return moved
    return mix_styles(moved, w, cutoff)


class StyleGANGenerator(_Progressive):
    """StyleGAN generator grown progressively (Karras et al. 2019).

    ``call(z, training)``: ``w = mapping(z)`` broadcast to one style per block, then the
    synthesis blocks up to the current resolution. In training-mode calls, with probability
    ``style_mixing_prob`` a second z's styles take over from a random block on (style-mixing
    regularisation; 0 reproduces the book), and ``w_avg`` (the running mean of w, decay
    ``w_avg_decay``) is updated for the truncation trick. Use :meth:`synthesize` to control
    styles and noise directly (style mixing, truncation, fixed noise).
    """

    def __init__(self, target_res: int = 64, z_dim: int = 512, w_dim: int = 512,
                 max_filters: int = 512, filter_table=None, mapping_layers: int = 8,
                 mapping_lrmul: float = 0.01, style_mixing_prob: float = 0.9,
                 w_avg_decay: float = 0.995, alpha=None, seed=None,
                 name: str = "stylegan_generator", **kwargs):
        super().__init__(name=name, **kwargs)
        self._init_progressive(target_res, alpha)
        self.z_dim, self.w_dim = int(z_dim), int(w_dim)
        self.style_mixing_prob, self.w_avg_decay = float(style_mixing_prob), float(w_avg_decay)
        self.n_blocks = len(self.resolutions)
        self.max_filters, self.mapping_layers = int(max_filters), int(mapping_layers)
        f = [filters_at(r, max_filters, filter_table) for r in self.resolutions]
        self.mapping = MappingNetwork(self.w_dim, mapping_layers, mapping_lrmul, name="mapping")
        self.mapping.build((None, self.z_dim))
        self.blocks = [stylegan_base_block(f[0], self.w_dim)] + [
            stylegan_synthesis_block(r, f[i], f[i - 1], self.w_dim)
            for i, r in enumerate(self.resolutions) if i > 0]
        self.rgb = [to_rgb(f[i], r) for i, r in enumerate(self.resolutions)]
        self.upsample = layers.UpSampling2D(2)
        self.w_avg = keras.Variable(np.zeros(self.w_dim, "float32"), trainable=False,
                                    name="w_avg")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def active_variables(self):
        parts = [self.mapping] + self.blocks[:self.level + 1] + [self.rgb[self.level]]
        if self.fade:
            parts.append(self.rgb[self.level - 1])
        return [v for p in parts for v in p.trainable_variables]

    def styles(self, z, training=False):
        """Per-block styles ``(B, n_blocks, w_dim)`` of latent codes z (no mixing)."""
        w = self.mapping(z, training=training)
        return ops.repeat(w[:, None, :], self.n_blocks, axis=1)

    def make_noise(self, batch, seed=None):
        """One N(0, 1) noise map ``(batch, r, r, 1)`` per block up to the current resolution.
        With an integer ``seed`` the maps are reproducible (NumPy)."""
        if seed is not None:
            rng = np.random.default_rng(seed)
            return [rng.standard_normal((batch, r, r, 1)).astype("float32")
                    for r in self.resolutions[:self.level + 1]]
        return [keras.random.normal((batch, r, r, 1), seed=self.seed_generator)
                for r in self.resolutions[:self.level + 1]]

    def synthesize(self, ws, noise=None, training=False):
        """Images at the current resolution from per-block styles ``ws`` (B, n_blocks, w_dim)
        and optional noise maps (see :meth:`make_noise`; fresh noise when None)."""
        ws = ops.convert_to_tensor(ws)
        if noise is None:
            noise = self.make_noise(ops.shape(ws)[0])
        noise = [ops.convert_to_tensor(n, dtype=ws.dtype) for n in noise]
        x = self.blocks[0]([ws[:, 0], noise[0]], training=training)
        old = None
        for i in range(1, self.level + 1):
            if i == self.level and self.fade:
                old = self.upsample(self.rgb[i - 1](x))
            x = self.blocks[i]([x, ws[:, i], noise[i]], training=training)
        image = self.rgb[self.level](x)
        return self.fade_layer([image, old]) if old is not None else image

    def call(self, z, training=False):
        w = self.mapping(z, training=training)
        ws = ops.repeat(w[:, None, :], self.n_blocks, axis=1)
        if training:
            mean_w = ops.mean(ops.cast(w, "float32"), axis=0)
            self.w_avg.assign(self.w_avg_decay * self.w_avg + (1.0 - self.w_avg_decay) * mean_w)
            if self.style_mixing_prob > 0 and self.level > 0:
                z2 = keras.random.normal(ops.shape(z), seed=self.seed_generator)
                ws2 = self.styles(z2, training=training)
                active = self.level + 1
                cross = keras.random.randint((), 1, active, seed=self.seed_generator)
                mix = keras.random.uniform((), seed=self.seed_generator) < self.style_mixing_prob
                ws = mix_styles(ws, ws2, ops.where(mix, cross, self.n_blocks))
        return self.synthesize(ws, training=training)

    def generate(self, z, psi: float = 1.0, cutoff: int | None = None, z_mix=None,
                 crossover: int | None = None, noise=None):
        """Inference helper: styles of z, optionally mixed with ``z_mix``'s from block
        ``crossover`` on, truncated towards ``w_avg`` with ``psi`` (blocks < ``cutoff``)."""
        ws = self.styles(z)
        if z_mix is not None:
            ws = mix_styles(ws, self.styles(z_mix), self.n_blocks if crossover is None
                            else crossover)
        if psi != 1.0:
            ws = truncate(ws, self.w_avg, psi, cutoff)
        return self.synthesize(ws, noise=noise)

    def build_all(self) -> None:
        """Run every resolution once so that all weights exist (before ``load_weights``)."""
        res, fade = self.res, self.fade
        z = np.zeros((1, self.z_dim), "float32")
        for r in self.resolutions:
            self.set_resolution(r, fade=r > 4)
            self(z)
        self.set_resolution(res, fade)


def build_stylegan(target_res: int = 64, z_dim: int = 512, w_dim: int = 512,
                   max_filters: int = 512, style_mixing_prob: float = 0.9, **kwargs):
    """``(StyleGAN generator, ProGAN discriminator)`` sharing one fade-in ``alpha``."""
    alpha = keras.Variable(1.0, trainable=False, name="alpha", dtype="float32")
    g = StyleGANGenerator(target_res, z_dim, w_dim, max_filters, alpha=alpha,
                          style_mixing_prob=style_mixing_prob, **kwargs)
    d = ProGANDiscriminator(target_res, max_filters, alpha=alpha)
    return g, d


def progressive_schedule(start_res: int, target_res: int, images_per_phase: int,
                         batch_sizes=None) -> list[tuple]:
    """Phases ``(res, 'stable' | 'transition', batch, steps)``: the start resolution has a
    stable phase only, every later one a transition (fade-in) then a stable phase; steps =
    ceil(images_per_phase / batch), so every phase sees about the same number of images."""
    batch_sizes = batch_sizes or BATCH_SIZES
    phases = []
    for res in resolutions(target_res, start_res):
        batch = int(batch_sizes[res])
        steps = math.ceil(images_per_phase / batch)
        if res != start_res:
            phases.append((res, "transition", batch, steps))
        phases.append((res, "stable", batch, steps))
    return phases


class ProgressiveGAN(keras.Model):
    """Trains a progressive generator (ProGAN or StyleGAN) against a ProGAN discriminator.

    ``grow(res, phase, steps)`` sets both networks to ``res``; in a ``'transition'`` phase
    alpha rises linearly from 0 to 1 over ``steps`` train steps (in-graph), in ``'stable'`` it
    is 1. Every new resolution gets fresh Adam optimizers (lr 1e-3, beta_1 0, beta_2 0.99,
    eps 1e-8; Keras 3 cannot reuse an optimizer on new variables). A train step makes one
    critic update with WGAN-GP (lambda ``gp_weight``) + drift, then one generator update on
    fresh z; each update touches only the active variables of one network.
    """

    def __init__(self, generator, discriminator, z_dim: int | None = None,
                 gp_weight: float = 10.0, drift_weight: float = 1e-3,
                 learning_rate: float = 1e-3, name: str = "progressive_gan", **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.z_dim = int(z_dim or generator.z_dim)
        self.gp_weight, self.drift_weight = float(gp_weight), float(drift_weight)
        self.learning_rate = float(learning_rate)
        self.alpha = generator.alpha
        self.phase_step = keras.Variable(0.0, trainable=False, name="phase_step")
        self.phase_steps = keras.Variable(1.0, trainable=False, name="phase_steps")
        self.trackers = {n: keras.metrics.Mean(name=n)
                         for n in ("d_loss", "g_loss", "gp", "drift", "alpha")}
        self._optimizer_res = None
        self.g_optimizer = self.d_optimizer = None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def build(self, input_shape=None):
        self.built = True

    def _adam(self):
        return keras.optimizers.Adam(self.learning_rate, beta_1=0.0, beta_2=0.99, epsilon=1e-8)

    def grow(self, res: int, phase: str = "stable", steps: int = 1) -> None:
        """Switch both networks to ``res`` and ``phase``; new optimizers for a new res."""
        if phase not in ("stable", "transition"):
            raise ValueError(f"phase must be 'stable' or 'transition', got {phase!r}")
        fade = phase == "transition"
        for net in (self.generator, self.discriminator):
            net.set_resolution(res, fade)
        self.alpha.assign(0.0 if self.generator.fade else 1.0)
        self.phase_step.assign(0.0)
        self.phase_steps.assign(float(max(int(steps), 1)))
        # Build the new blocks eagerly, outside any traced function.
        z = np.zeros((2, self.z_dim), "float32")
        self.discriminator(self.generator(z))
        if self._optimizer_res != res:
            self.g_optimizer, self.d_optimizer = self._adam(), self._adam()
            self._optimizer_res = res
        self.g_optimizer.build(self.generator.active_variables())
        self.d_optimizer.build(self.discriminator.active_variables())
        for tracker in self.trackers.values():
            tracker.reset_state()
        self.train_function = None  # retrace for the new shapes and phase

    def compile(self, **kwargs):
        super().compile(optimizer=None, **kwargs)

    def sample_noise(self, n):
        return tf.random.normal(tf.stack([n, self.z_dim]))

    @property
    def _replicas(self) -> float:
        return float(self.distribute_strategy.num_replicas_in_sync)

    def discriminator_step(self, real, z):
        variables = self.discriminator.active_variables()
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            real_out = self.discriminator(real, training=True)
            fake_out = self.discriminator(fake, training=True)
            wasserstein = tf.reduce_mean(fake_out) - tf.reduce_mean(real_out)
            gp = gradient_penalty(self.discriminator, real, fake)
            drift = drift_penalty(real_out, fake_out, self.drift_weight)
            d_loss = wasserstein + self.gp_weight * gp + drift
            scaled = d_loss / self._replicas
        grads = tape.gradient(scaled, variables)
        self.d_optimizer.apply_gradients(zip(grads, variables))
        return {"d_loss": d_loss, "gp": gp, "drift": drift}

    def generator_step(self, z):
        variables = self.generator.active_variables()
        with tf.GradientTape() as tape:
            g_loss = -tf.reduce_mean(self.discriminator(self.generator(z, training=True),
                                                        training=True))
            scaled = g_loss / self._replicas
        grads = tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return {"g_loss": g_loss}

    def train_step(self, data):
        real = data[0] if isinstance(data, (tuple, list)) else data
        batch = tf.shape(real)[0]
        if self.generator.fade:
            self.alpha.assign(tf.minimum(1.0, (self.phase_step + 1.0) / self.phase_steps))
        values = self.discriminator_step(real, self.sample_noise(batch))
        values.update(self.generator_step(self.sample_noise(batch)))
        values["alpha"] = tf.identity(self.alpha)
        self.phase_step.assign_add(1.0)
        for key, value in values.items():
            self.trackers[key].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def _phase_checkpoint(directory):
    import json
    from pathlib import Path

    meta = Path(directory) / "phase.json"
    return json.loads(meta.read_text()) if meta.exists() else None


def save_phase(gan: ProgressiveGAN, directory, index: int, records) -> None:
    """Write both networks' weights and the number of completed phases to ``directory``."""
    import json
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gan.generator.save_weights(str(directory / "generator.weights.h5"))
    gan.discriminator.save_weights(str(directory / "discriminator.weights.h5"))
    summary = [{k: v for k, v in r.items() if k != "history"} for r in records]
    (directory / "phase.json").write_text(json.dumps({"completed": index + 1, "phases": summary}))


def fit_progressive(gan: ProgressiveGAN, images: tf.data.Dataset, schedule, callbacks=None,
                    on_phase_end=None, verbose: int = 0, checkpoint_dir=None) -> list[dict]:
    """Run every phase of ``schedule`` with ``fit``: ``images`` yields single target-resolution
    images in [-1, 1]; each phase batches them at its own size and resolution. Returns one
    record per phase with its history; ``on_phase_end(record)`` is called after each.

    With ``checkpoint_dir`` the weights of G and D are saved after every phase, and a rerun
    resumes at the first phase not completed (with fresh optimizers: Adam's moments are not
    kept, as they are reset at every new resolution anyway)."""
    records, start = [], 0
    if checkpoint_dir is not None:
        done = _phase_checkpoint(checkpoint_dir)
        if done is not None:
            start = int(done["completed"])
            gan.generator.load_weights(str(Path(checkpoint_dir) / "generator.weights.h5"))
            gan.discriminator.load_weights(str(Path(checkpoint_dir) / "discriminator.weights.h5"))
    for index, (res, phase, batch, steps) in enumerate(schedule):
        if index < start:
            continue
        gan.grow(res, phase, steps)
        ds = at_resolution(images, res).repeat().batch(batch, drop_remainder=True)
        history = gan.fit(ds.prefetch(tf.data.AUTOTUNE), steps_per_epoch=steps, epochs=1,
                          callbacks=callbacks, verbose=verbose)
        record = dict(res=res, phase=phase, batch=batch, steps=steps, history=history.history)
        records.append(record)
        if checkpoint_dir is not None:
            save_phase(gan, checkpoint_dir, index, records)
        if on_phase_end is not None:
            on_phase_end(record)
    if start and not records:
        res, phase, _, steps = schedule[-1]
        gan.grow(res, phase, steps)  # everything was done: leave the networks at the end
    return records


def at_resolution(images: tf.data.Dataset, res: int) -> tf.data.Dataset:
    """Average-pool each image (H, W, 3) down to ``res`` (the same 2x2 box filter the
    discriminator uses on its fade-in path, applied H/res times in one go)."""
    def down(x):
        factor = x.shape[0] // res
        if factor <= 1:
            return x
        return tf.nn.avg_pool2d(x[None], factor, factor, "VALID")[0]

    return images.map(down, num_parallel_calls=tf.data.AUTOTUNE)


def save_stylegan(generator: StyleGANGenerator, directory) -> str:
    """Write the generator's weights (including ``w_avg``) to ``directory/generator.weights.h5``
    and its configuration to ``config.json``; returns the weights' path."""
    import json
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator.build_all()
    path = directory / "generator.weights.h5"
    generator.save_weights(str(path))
    cfg = dict(target_res=generator.target_res, z_dim=generator.z_dim, w_dim=generator.w_dim,
               max_filters=generator.max_filters, mapping_layers=generator.mapping_layers,
               res=generator.res)
    (directory / "config.json").write_text(json.dumps(cfg))
    return str(path)


def load_stylegan(directory) -> StyleGANGenerator | None:
    """The generator saved by :func:`save_stylegan`, set to its saved resolution; None when
    ``directory`` holds no checkpoint."""
    import json
    from pathlib import Path

    directory = Path(directory)
    if not (directory / "config.json").exists():
        return None
    cfg = json.loads((directory / "config.json").read_text())
    res = cfg.pop("res")
    generator = StyleGANGenerator(**cfg)
    generator.build_all()
    generator.load_weights(str(directory / "generator.weights.h5"))
    generator.set_resolution(res)
    return generator
