"""Chapter 6: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import tensorflow as tf
import math
from common.ch02 import kl_divergence
from common.ch04 import InstanceNormalization
from common.ch05 import STYLE_LAYERS, instance_normalize, vgg_feature_extractor, vgg_preprocess


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


def hinge_d_loss(real_out, fake_out):
    """Discriminator hinge loss ``mean relu(1 - D(x)) + mean relu(1 + D(G(z)))``.

    A real score above +1 or a fake score below -1 costs nothing; inside the margin the cost
    grows linearly (as in a support vector machine). Written with ``relu`` rather than
    ``keras.losses.Hinge``, which silently turns 0/1 labels into -1/+1. Lim & Ye 2017,
    "Geometric GAN"; used by SAGAN and GauGAN (Park et al. 2019).
    """
    real_out = ops.convert_to_tensor(real_out)
    fake_out = ops.cast(ops.convert_to_tensor(fake_out), real_out.dtype)
    return ops.mean(ops.relu(1.0 - real_out)) + ops.mean(ops.relu(1.0 + fake_out))


def hinge_g_loss(fake_out):
    """Generator loss of the hinge GAN, ``-mean D(G(z))`` (unbounded below, no margin)."""
    return -ops.mean(fake_out)


def feature_matching_loss(real_features, fake_features):
    """Sum over layers of the mean absolute difference between the discriminator's features
    of real and generated images (pix2pixHD, Wang et al. 2018; GauGAN). Pass the
    intermediate feature maps only, not the final score map. The real features are targets:
    no gradient flows into them."""
    total = 0.0
    for real, fake in zip(real_features, fake_features):
        real = ops.stop_gradient(ops.convert_to_tensor(real))
        total = total + ops.mean(ops.abs(real - ops.cast(fake, real.dtype)))
    return total


#: Layer weights of the VGG loss of pix2pixHD/GauGAN for block1..block5 ``conv1`` features:
#: deeper layers, which describe structure rather than texture, count more.
VGG_LOSS_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def perceptual_loss(target_features, output_features, weights=None, distance: str = "l1"):
    """Weighted sum over layers of the mean distance between two lists of feature maps
    (for example VGG19 features of a real and a generated image): ``sum_i w_i *
    mean|phi_i(y) - phi_i(y_hat)|`` (``distance='l1'``, pix2pixHD/GauGAN) or the mean squared
    difference (``'l2'``; Johnson et al. 2016, "Perceptual Losses for Real-Time Style
    Transfer and Super-Resolution"). ``weights`` defaults to 1 for every layer."""
    if distance not in ("l1", "l2"):
        raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")
    target_features, output_features = list(target_features), list(output_features)
    weights = [1.0] * len(target_features) if weights is None else list(weights)
    if not len(weights) == len(target_features) == len(output_features):
        raise ValueError("need one weight and one output per target feature map")
    total = 0.0
    for w, target, output in zip(weights, target_features, output_features):
        target = ops.stop_gradient(ops.convert_to_tensor(target))
        diff = target - ops.cast(output, target.dtype)
        per_layer = ops.mean(ops.abs(diff)) if distance == "l1" else ops.mean(ops.square(diff))
        total = total + w * per_layer
    return total


#: Classes of the CMP facade labels used by the book (background, facade, window, door,
#: cornice, sill, balcony, blind, deco, molding, pillar, shop).
FACADES_CLASSES = 12


# The book's generator: Dense to 4x4x(16*base), then residual blocks, each followed by a x2
# up-sampling, with these filter multipliers (base 64: 1024, 1024, 1024, 512, 256, 128).
_GENERATOR_MULTIPLIERS = (16, 16, 16, 8, 4, 2)


def fit_palette(color_maps, n_classes: int = FACADES_CLASSES, iterations: int = 20, seed: int = 0,
                max_pixels: int = 200_000) -> np.ndarray:
    """Find the ``n_classes`` colours of RGB label maps by k-means on their pixels.

    The pix2pix facades archive stores its label maps as JPEG, whose compression blurs the
    class colours, so exact colour lookup fails (the book therefore rebuilt the data set from
    the raw CMP files). Cluster centres of the pixel colours recover the palette; assigning
    every pixel to the nearest centre (:func:`colors_to_labels`) then undoes the JPEG noise.
    Returns a ``(n_classes, 3)`` float32 array in the maps' value range, sorted by brightness.
    """
    pixels = np.asarray(color_maps, np.float32).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    if len(pixels) > max_pixels:
        pixels = pixels[rng.choice(len(pixels), max_pixels, replace=False)]
    centres = pixels[rng.choice(len(pixels), n_classes, replace=False)].copy()
    for _ in range(iterations):
        distances = ((pixels[:, None, :] - centres[None]) ** 2).sum(-1)
        nearest = distances.argmin(1)
        for k in range(n_classes):
            members = pixels[nearest == k]
            # an empty cluster restarts on the pixel worst served by the current centres
            centres[k] = members.mean(0) if len(members) else pixels[distances.min(1).argmax()]
    return centres[np.argsort(centres.sum(1))].astype(np.float32)


def colors_to_labels(color_maps, palette):
    """Class index ``(..., H, W)`` int32 of every pixel: the nearest palette colour."""
    maps = tf.cast(color_maps, tf.float32)
    palette = tf.constant(np.asarray(palette, np.float32))
    distances = tf.reduce_sum(tf.square(maps[..., None, :] - palette), axis=-1)
    return tf.argmin(distances, axis=-1, output_type=tf.int32)


def colors_to_onehot(color_maps, palette):
    """One-hot segmentation mask ``(..., H, W, K)`` float32 from RGB label maps (works inside
    ``tf.data.Dataset.map``)."""
    return tf.one_hot(colors_to_labels(color_maps, palette), len(palette), dtype=tf.float32)


def colorize(segmap, palette=None) -> np.ndarray:
    """RGB picture in [0, 1] of a one-hot ``(..., H, W, K)`` map or an int label map, using
    ``palette`` (values in [0, 1] or [0, 255]) or a categorical colour map."""
    segmap = np.asarray(segmap)
    labels = segmap.argmax(-1) if segmap.dtype.kind == "f" else segmap.astype(int)
    if palette is None:
        import matplotlib

        palette = matplotlib.colormaps["tab20"](np.arange(20))[:, :3]
    palette = np.asarray(palette, np.float32)
    if palette.max() > 1.0:
        palette = palette / 255.0
    return palette[labels % len(palette)]


def _blocks(image_size: int) -> int:
    blocks = math.log2(image_size / 4)
    if image_size < 8 or blocks != int(blocks):
        raise ValueError(f"image_size must be 4 * 2**k with k >= 1, got {image_size}")
    return int(blocks)


def build_gaugan_generator(image_size: int = 256, n_classes: int = FACADES_CLASSES, z_dim: int = 256,
                           base_filters: int = 64, spade_hidden: int = 128, norm: str = "batch",
                           name: str = "generator") -> keras.Model:
    """GauGAN generator of the book: ``[z (B, z_dim), segmap (B, S, S, K)] -> image (B, S, S, 3)``.

    z -> Dense -> (4, 4, 16*base) -> [SPADEResBlock -> nearest x2 up-sampling] per resolution
    (filters 16, 16, 16, 8, 4, 2 times ``base_filters`` for 256x256; the last ones for smaller
    images) -> LeakyReLU(0.2) -> 4x4 conv to RGB -> tanh. The segmentation map enters every
    block; ``z`` only sets the style.
    """
    n_blocks = _blocks(image_size)
    if n_blocks > len(_GENERATOR_MULTIPLIERS):
        raise ValueError(f"image_size at most {4 * 2 ** len(_GENERATOR_MULTIPLIERS)}")
    multipliers = _GENERATOR_MULTIPLIERS[-n_blocks:]
    z = keras.Input((z_dim,), name="z")
    segmap = keras.Input((image_size, image_size, n_classes), name="segmap")
    channels = _GENERATOR_MULTIPLIERS[0] * base_filters
    x = keras.layers.Dense(4 * 4 * channels, name="project")(z)
    x = keras.layers.Reshape((4, 4, channels))(x)
    for i, m in enumerate(multipliers):
        filters = m * base_filters
        x = SPADEResBlock(filters, channels, hidden=spade_hidden, norm=norm, name=f"spade_block_{i}")(x, segmap)
        x = keras.layers.UpSampling2D(2, name=f"up_{i}")(x)
        channels = filters
    x = keras.layers.LeakyReLU(0.2)(x)
    image = keras.layers.Conv2D(3, 4, padding="same", activation="tanh", name="to_rgb")(x)
    return keras.Model([z, segmap], image, name=name)


def _instance_norm(name):
    return InstanceNormalization(epsilon=1e-5, name=name)


def build_gaugan_encoder(image_size: int = 256, z_dim: int = 256, base_filters: int = 64,
                         name: str = "encoder") -> keras.Model:
    """Style encoder (the cVAE part of GauGAN): image (B, S, S, 3) -> ``(mean, logvar)`` of
    q(z | image), each (B, z_dim). Stride-2 3x3 convolutions (base, 2, 4, 8, 8, 8 times base
    filters, as many as bring S down to 4) with instance norm (none on the first) and
    LeakyReLU(0.2), then flatten and two dense heads."""
    n_down = min(_blocks(image_size), 6)
    image = keras.Input((image_size, image_size, 3), name="image")
    x = image
    for i in range(n_down):
        x = keras.layers.Conv2D(base_filters * min(2 ** i, 8), 3, strides=2, padding="same",
                                name=f"down_{i}")(x)
        if i:
            x = _instance_norm(f"norm_{i}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Flatten()(x)
    mean = keras.layers.Dense(z_dim, name="mean")(x)
    logvar = keras.layers.Dense(z_dim, name="logvar")(x)
    return keras.Model(image, [mean, logvar], name=name)


def build_patchgan_features(image_size: int = 256, n_classes: int = FACADES_CLASSES,
                            base_filters: int = 64, name: str = "patchgan") -> keras.Model:
    """PatchGAN on ``[segmap, image]`` concatenated on channels that returns every block's
    output: ``[f1, f2, f3, f4, scores]``. Blocks: 4x4 conv, stride 2, 2, 2, 1 (base, 2, 4, 8
    times ``base_filters``), instance norm except on the first, LeakyReLU(0.2); then a 4x4
    conv to one score per patch (no activation: hinge loss). The map is fed one-hot (the
    paper's choice; the book feeds the RGB map, but concatenation does not need equal
    channel counts)."""
    segmap = keras.Input((image_size, image_size, n_classes), name="segmap")
    image = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Concatenate()([segmap, image])
    features = []
    for i, (mult, stride) in enumerate(((1, 2), (2, 2), (4, 2), (8, 1))):
        x = keras.layers.Conv2D(mult * base_filters, 4, strides=stride, padding="same",
                                name=f"conv_{i}")(x)
        if i:
            x = _instance_norm(f"norm_{i}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        features.append(x)
    scores = keras.layers.Conv2D(1, 4, padding="same", name="scores")(x)
    return keras.Model([segmap, image], [*features, scores], name=name)


class MultiScaleDiscriminator(keras.Model):
    """``n_scales`` PatchGANs (:func:`build_patchgan_features`), the k-th one looking at the
    input average-pooled k times by 2 (3x3 window, stride 2), so coarse discriminators judge
    global layout and fine ones texture (pix2pixHD). ``call([segmap, image])`` returns one
    list ``[f1, f2, f3, f4, scores]`` per scale. The paper uses 2 scales; the book uses 1 for
    256x256 facades."""

    def __init__(self, image_size: int = 256, n_classes: int = FACADES_CLASSES, n_scales: int = 2,
                 base_filters: int = 64, name: str = "discriminator", **kwargs):
        super().__init__(name=name, **kwargs)
        self.image_size, self.n_classes = int(image_size), int(n_classes)
        self.n_scales, self.base_filters = int(n_scales), int(base_filters)
        self.discriminators = [
            build_patchgan_features(image_size // 2 ** k, n_classes, base_filters, name=f"patchgan_{k}")
            for k in range(self.n_scales)
        ]
        self.pool = keras.layers.AveragePooling2D(3, strides=2, padding="same")

    def call(self, inputs, training=False):
        segmap, image = inputs
        outputs = []
        for k, disc in enumerate(self.discriminators):
            if k:
                segmap, image = self.pool(segmap), self.pool(image)
            outputs.append(disc([segmap, image], training=training))
        return outputs

    def get_config(self):
        return {"image_size": self.image_size, "n_classes": self.n_classes,
                "n_scales": self.n_scales, "base_filters": self.base_filters}


class GauGAN(keras.Model):
    """GauGAN training with ``fit`` on ``(segmap, image)`` batches (one-hot maps, images in
    [-1, 1]).

    One ``train_step`` makes one discriminator update (hinge loss averaged over scales, on
    the real pair and a generated pair whose gradient stops at the generator) and then one
    update of the generator *and* encoder together with
    ``hinge_g + fm_weight * feature matching + vgg_weight * VGG loss + kl_weight * KL``
    (weights 10, 10, 0.05 and learning rates G 1e-4 / D 4e-4 with Adam(beta1=0, beta2=0.999),
    the paper's two-time-scale setting; the book gives none of these numbers). VGG19 stays
    frozen. Without an encoder, ``z ~ N(0, I)`` and there is no KL term. Losses are divided
    by the number of replicas, as in :class:`common.training.GAN`.
    """

    def __init__(self, generator, discriminator, encoder=None, vgg="auto", *, z_dim: int | None = None,
                 fm_weight: float = 10.0, vgg_weight: float = 10.0, kl_weight: float = 0.05,
                 name: str = "gaugan", **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator, self.discriminator, self.encoder = generator, discriminator, encoder
        if isinstance(vgg, str):
            vgg = vgg_feature_extractor(STYLE_LAYERS, weights=vgg, name="vgg_loss_features")
        self.vgg = vgg
        if self.vgg is not None:
            self.vgg.trainable = False
        self.z_dim = int(z_dim or generator.input_shape[0][-1])
        self.fm_weight, self.vgg_weight, self.kl_weight = float(fm_weight), float(vgg_weight), float(kl_weight)
        names = ["d_loss", "g_loss", "fm_loss", "vgg_loss", "kl_loss"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.999)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(4e-4, beta_1=0.0, beta_2=0.999)
        self.g_optimizer.build(self.generator_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def generator_variables(self):
        """Trainable variables of the generator and (if any) the encoder."""
        variables = list(self.generator.trainable_variables)
        if self.encoder is not None:
            variables += list(self.encoder.trainable_variables)
        return variables

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        self.built = True

    @property
    def _replicas(self) -> float:
        return float(self.distribute_strategy.num_replicas_in_sync)

    def style_code(self, images=None, n=None, training=False):
        """``(z, mean, logvar)``: a reparameterised sample of q(z | images) when there is an
        encoder and images, otherwise ``z ~ N(0, I)`` for ``n`` samples (mean, logvar None)."""
        if images is None or self.encoder is None:
            n = n if n is not None else tf.shape(images)[0]
            return tf.random.normal(tf.stack([n, self.z_dim])), None, None
        mean, logvar = self.encoder(images, training=training)
        z = mean + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mean))
        return z, mean, logvar

    def call(self, inputs, training=False):
        """``[z, segmap] -> image``."""
        return self.generator(inputs, training=training)

    def generate(self, segmap, style_images=None, z=None):
        """Images for one-hot maps with the style of ``style_images`` (through the encoder),
        of given codes ``z``, or of random codes."""
        segmap = tf.convert_to_tensor(segmap, tf.float32)
        if style_images is not None:
            style_images = tf.convert_to_tensor(style_images, tf.float32)
        if z is not None:
            z = tf.convert_to_tensor(z, tf.float32)
        if z is None:
            z, _, _ = self.style_code(style_images, n=tf.shape(segmap)[0])
        return self.generator([z, segmap], training=False)

    def discriminator_step(self, segmap, image):
        """One update of the discriminator only."""
        segmap, image = tf.convert_to_tensor(segmap), tf.convert_to_tensor(image)
        z, _, _ = self.style_code(image, training=True)
        fake = tf.stop_gradient(self.generator([z, segmap], training=True))
        with tf.GradientTape() as tape:
            real_out = self.discriminator([segmap, image], training=True)
            fake_out = self.discriminator([segmap, fake], training=True)
            d_loss = tf.add_n([hinge_d_loss(r[-1], f[-1]) for r, f in zip(real_out, fake_out)])
            d_loss = d_loss / len(real_out)
            scaled = d_loss / self._replicas
        variables = self.discriminator.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.d_optimizer.apply_gradients(zip(grads, variables))
        return {"d_loss": d_loss}

    def generator_step(self, segmap, image):
        """One update of the generator and encoder together."""
        segmap, image = tf.convert_to_tensor(segmap), tf.convert_to_tensor(image)
        with tf.GradientTape() as tape:
            z, mean, logvar = self.style_code(image, training=True)
            fake = self.generator([z, segmap], training=True)
            fake_out = self.discriminator([segmap, fake], training=True)
            real_out = self.discriminator([segmap, image], training=True)
            scales = float(len(fake_out))
            g_loss = tf.add_n([hinge_g_loss(f[-1]) for f in fake_out]) / scales
            fm_loss = tf.add_n([feature_matching_loss(r[:-1], f[:-1])
                                for r, f in zip(real_out, fake_out)]) / scales
            total = g_loss + self.fm_weight * fm_loss
            vgg_loss = tf.zeros(())
            if self.vgg is not None:
                real_features = self.vgg(vgg_preprocess((image + 1.0) / 2.0))
                fake_features = self.vgg(vgg_preprocess((fake + 1.0) / 2.0))
                vgg_loss = perceptual_loss(real_features, fake_features, VGG_LOSS_WEIGHTS)
                total += self.vgg_weight * vgg_loss
            kl_loss = tf.zeros(())
            if mean is not None:
                kl_loss = kl_divergence(mean, logvar, reduction="sum")
                total += self.kl_weight * kl_loss
            scaled = total / self._replicas
        variables = self.generator_variables
        grads = tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return {"g_loss": g_loss, "fm_loss": fm_loss, "vgg_loss": vgg_loss, "kl_loss": kl_loss}

    def train_step(self, data):
        segmap, image = data[0], data[1]
        logs = self.discriminator_step(segmap, image)
        logs.update(self.generator_step(segmap, image))
        for key, value in logs.items():
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}


def interpolate_latents(z0, z1, steps: int = 8) -> np.ndarray:
    """``steps`` codes evenly spaced on the segment from ``z0`` to ``z1`` (both included),
    shape ``(steps, z_dim)``."""
    z0, z1 = np.asarray(z0, np.float32), np.asarray(z1, np.float32)
    t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
    return (1.0 - t) * z0 + t * z1


def project_to_latent(generator, target, *, mask=None, z_init=None, anchor=None,
                      anchor_weight: float = 0.0, feature_fn=None, steps: int = 200,
                      learning_rate: float = 0.05, restarts: int = 1, seed: int = 0):
    """Find ``z`` minimising ``||mask * (f(G(z)) - f(target))||^2 (mean) + anchor_weight *
    ||z - anchor||^2`` with Adam; the generator stays frozen.

    - projection: ``mask=None`` compares every pixel (or the features ``feature_fn`` of the
      images, e.g. VGG activations, as in the paper);
    - editing: ``mask`` (broadcastable to the image, 1 where the user painted) restricts the
      data term to the strokes, and ``anchor`` (the original code) with ``anchor_weight``
      keeps the rest of the image close to where it was (the paper's smoothness term).

    ``target`` is one image ``(H, W, C)`` in the generator's range. ``restarts`` random
    initial codes are optimised together and the best is returned. Returns ``(z, image,
    losses)``: the code ``(z_dim,)``, its image, and the best loss after each step.
    """
    z_dim = int(generator.input_shape[-1])
    target = tf.convert_to_tensor(np.asarray(target, np.float32)[None])
    mask = tf.ones_like(target) if mask is None else tf.convert_to_tensor(np.asarray(mask, np.float32))
    if z_init is None:
        start = tf.random.stateless_normal((restarts, z_dim), seed=(seed, 1))
    else:
        start = tf.tile(tf.convert_to_tensor(np.asarray(z_init, np.float32).reshape(1, z_dim)), (restarts, 1))
    z = tf.Variable(start, name="z")
    anchor_t = tf.zeros((1, z_dim)) if anchor is None else tf.constant(np.asarray(anchor, np.float32).reshape(1, z_dim))
    features = feature_fn or (lambda x: x)
    target_features = tf.stop_gradient(features(target * mask))
    optimizer = keras.optimizers.Adam(learning_rate)

    def per_code_loss():
        images = generator(z, training=False)
        diff = features(images * mask) - target_features
        data = tf.reduce_mean(tf.square(tf.reshape(diff, (restarts, -1))), axis=1)
        return data + anchor_weight * tf.reduce_sum(tf.square(z - anchor_t), axis=1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            losses = per_code_loss()
            total = tf.reduce_sum(losses)
        optimizer.apply_gradients([(tape.gradient(total, z), z)])
        return losses

    history = []
    for _ in range(int(steps)):
        history.append(float(tf.reduce_min(step())))
    final = per_code_loss().numpy()
    best = int(np.argmin(final))
    z_best = z.numpy()[best]
    image = np.asarray(generator(z_best[None], training=False))[0]
    return z_best, image, history
