"""GauGAN (book Chapter 6): segmentation map -> photo with SPADE residual blocks.

Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization". The
generator decodes a style code ``z`` (256-d, from N(0, I) or from a VAE-style encoder of a
photo) while every residual block re-reads the one-hot segmentation map through
:class:`~common.layers.SPADE`. The discriminator is a PatchGAN that returns its intermediate
feature maps as well as its score map, used at several image scales (pix2pixHD, Wang et al.
2018). Training (:class:`GauGAN`) combines the hinge adversarial loss, discriminator feature
matching, a VGG19 perceptual loss and the encoder's KL divergence.

Images are in [-1, 1]; segmentation maps are one-hot ``(B, H, W, K)`` float32.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import keras
from keras import ops

from .layers import InstanceNormalization, SPADEResBlock
from .losses import (VGG_LOSS_WEIGHTS, feature_matching_loss, hinge_d_loss, hinge_g_loss,
                     kl_divergence, perceptual_loss)
from .style import STYLE_LAYERS, vgg_feature_extractor, vgg_preprocess

__all__ = [
    "FACADES_CLASSES",
    "fit_palette",
    "colors_to_labels",
    "colors_to_onehot",
    "colorize",
    "build_gaugan_generator",
    "build_gaugan_encoder",
    "build_patchgan_features",
    "MultiScaleDiscriminator",
    "GauGAN",
]

#: Classes of the CMP facade labels used by the book (background, facade, window, door,
#: cornice, sill, balcony, blind, deco, molding, pillar, shop).
FACADES_CLASSES = 12

# The book's generator: Dense to 4x4x(16*base), then residual blocks, each followed by a x2
# up-sampling, with these filter multipliers (base 64: 1024, 1024, 1024, 512, 256, 128).
_GENERATOR_MULTIPLIERS = (16, 16, 16, 8, 4, 2)


# --------------------------------------------------------------------------------------------
# Segmentation maps: colours <-> classes

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


# --------------------------------------------------------------------------------------------
# Networks

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


# --------------------------------------------------------------------------------------------
# Training model

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
