"""Chapter 2: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import tensorflow as tf
import json
import os
from pathlib import Path
import warnings
from dataclasses import dataclass
import matplotlib.pyplot as plt


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


def kl_divergence(mean, logvar, reduction: str = "mean"):
    """KL divergence of N(mean, exp(logvar)) from the standard normal N(0, I).

    Per latent dimension ``KL_i = -0.5 * (1 + logvar_i - mean_i**2 - exp(logvar_i))``.
    ``reduction``: ``'mean'`` over every element (batch and latent dims, as the book does, so
    its KL weight keeps its meaning), ``'sum'`` over the latent dims then mean over the batch
    (the ELBO's term), ``'none'`` the per-element values.
    """
    mean = ops.convert_to_tensor(mean)
    logvar = ops.cast(ops.convert_to_tensor(logvar), mean.dtype)
    per_element = -0.5 * (1.0 + logvar - ops.square(mean) - ops.exp(logvar))
    if reduction == "mean":
        return ops.mean(per_element)
    if reduction == "sum":
        flat = ops.reshape(per_element, (ops.shape(per_element)[0], -1))
        return ops.mean(ops.sum(flat, axis=-1))
    if reduction == "none":
        return per_element
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def build_dense_encoder(z_dim: int = 10, input_shape=(28, 28, 1), name: str = "encoder") -> keras.Model:
    """The first encoder of Chapter 2 (for illustration): Flatten -> Dense 128, 64, 32 (ReLU)
    -> a linear Dense(z_dim). With z_dim=10: 111,146 parameters, as the book prints."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten()(inputs)
    for units in (128, 64, 32):
        x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(z_dim, name="z")(x)
    return keras.Model(inputs, outputs, name=name)


def build_mnist_encoder(z_dim: int = 10, variational: bool = False, input_shape=(28, 28, 1),
                        seed=None, name: str = "encoder") -> keras.Model:
    """Convolutional MNIST encoder of Chapter 2 (autoencoder: Hinton & Salakhutdinov 2006;
    VAE: Kingma & Welling 2013).

    Four 3x3 convolutions with 8 filters and ReLU, strides 2, 1, 2, 1 ('same'):
    (28, 28, 1) -> (7, 7, 8) -> Flatten (392). Then a linear Dense(z_dim) (the book's listing
    puts ReLU there; the text and its notebook keep the latent space unbounded, so it is
    linear here). ``variational=True`` replaces it with two linear heads ``mean`` and
    ``logvar`` and a :class:`~common.layers.GaussianSampling` layer; the model then returns
    ``[z, mean, logvar]``. Parameters: 5,762 (z=10), 2,618 (z=2), 41,132 (z=100); VAE z=2: 3,404.
    """
    pass

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, stride in enumerate((2, 1, 2, 1), start=1):
        x = keras.layers.Conv2D(8, 3, strides=stride, padding="same", activation="relu",
                                name=f"conv{i}")(x)
    x = keras.layers.Flatten()(x)
    if not variational:
        return keras.Model(inputs, keras.layers.Dense(z_dim, name="z")(x), name=name)
    mean = keras.layers.Dense(z_dim, name="mean")(x)
    logvar = keras.layers.Dense(z_dim, name="logvar")(x)
    z = GaussianSampling(seed=seed, name="z")([mean, logvar])
    return keras.Model(inputs, [z, mean, logvar], name=name)


def build_mnist_decoder(z_dim: int = 10, name: str = "decoder") -> keras.Model:
    """MNIST decoder of Chapter 2: Dense(7*7*64, ReLU) -> Reshape (7, 7, 64) -> Conv 64 ->
    UpSampling x2 -> Conv 32 -> UpSampling x2 -> Conv 1 with sigmoid: (28, 28, 1) in [0, 1].
    All convolutions 3x3, stride 1, 'same', ReLU; no transposed convolution. Parameters:
    90,177 (z=10), 65,089 (z=2), 372,417 (z=100)."""
    inputs = keras.Input(shape=(z_dim,), name="z")
    x = keras.layers.Dense(7 * 7 * 64, activation="relu")(inputs)
    x = keras.layers.Reshape((7, 7, 64))(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.UpSampling2D(2)(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="image")(x)
    return keras.Model(inputs, outputs, name=name)


def build_autoencoder(encoder: keras.Model, decoder: keras.Model, name: str = "autoencoder") -> keras.Model:
    """decoder(encoder(x)) as one functional model, trained with the image as its own target."""
    inputs = keras.Input(shape=encoder.input_shape[1:], name="image")
    return keras.Model(inputs, decoder(encoder(inputs)), name=name)


def _face_grid(image_size: int) -> int:
    if image_size % 16:
        raise ValueError(f"image_size must be divisible by 16 (four 2x steps), got {image_size}")
    return image_size // 16


def build_face_encoder(z_dim: int = 200, image_size: int = 112, seed=None,
                       name: str = "encoder") -> keras.Model:
    """Face VAE encoder of Chapter 2 (Kingma & Welling 2013): four
    :class:`~common.layers.DownConvBlock` (32, 32, 64, 64 filters) take
    (image_size, image_size, 3) to (image_size/16, image_size/16, 64); Flatten; linear heads
    ``mean`` and ``logvar``; :class:`~common.layers.GaussianSampling`. Returns
    ``[z, mean, logvar]``. At 112x112, z=200: 1,321,136 parameters (384 non-trainable)."""
    pass

    _face_grid(image_size)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for i, filters in enumerate((32, 32, 64, 64), start=1):
        x = DownConvBlock(filters, name=f"down{i}")(x)
    x = keras.layers.Flatten()(x)
    mean = keras.layers.Dense(z_dim, name="mean")(x)
    logvar = keras.layers.Dense(z_dim, name="logvar")(x)
    z = GaussianSampling(seed=seed, name="z")([mean, logvar])
    return keras.Model(inputs, [z, mean, logvar], name=name)


def build_face_decoder(z_dim: int = 200, image_size: int = 112, name: str = "decoder") -> keras.Model:
    """Face VAE decoder of Chapter 2: Dense(s*s*64, ReLU) with s = image_size/16 -> Reshape
    -> four :class:`~common.layers.UpConvBlock` (64, 64, 32, 32) -> 3x3 Conv 3 with sigmoid:
    (image_size, image_size, 3) in [0, 1]. At 112x112, z=200: 732,771 parameters."""
    pass

    s = _face_grid(image_size)
    inputs = keras.Input(shape=(z_dim,), name="z")
    x = keras.layers.Dense(s * s * 64, activation="relu")(inputs)
    x = keras.layers.Reshape((s, s, 64))(x)
    for i, filters in enumerate((64, 64, 32, 32), start=1):
        x = UpConvBlock(filters, name=f"up{i}")(x)
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="image")(x)
    return keras.Model(inputs, outputs, name=name)


def reconstruction_loss(x, x_hat, kind: str = "mse"):
    """Mean over every pixel and sample of the squared error (``'mse'``, the L2 loss) or of
    the per-pixel binary cross-entropy (``'bce'``, targets in [0, 1], ``x_hat`` probabilities
    clipped to [1e-7, 1 - 1e-7])."""
    x_hat = keras.ops.convert_to_tensor(x_hat)
    x = keras.ops.cast(keras.ops.convert_to_tensor(x), x_hat.dtype)
    if kind == "mse":
        return keras.ops.mean(keras.ops.square(x - x_hat))
    if kind == "bce":
        p = keras.ops.clip(x_hat, 1e-7, 1.0 - 1e-7)
        return -keras.ops.mean(x * keras.ops.log(p) + (1.0 - x) * keras.ops.log(1.0 - p))
    raise ValueError(f"kind must be 'mse' or 'bce', got {kind!r}")


class VAE(keras.Model):
    """Variational autoencoder (Kingma & Welling 2013) trained with ``fit``.

    ``encoder(x)`` must return ``[z, mean, logvar]`` (z drawn with
    :class:`~common.layers.GaussianSampling`) and ``decoder(z)`` an image. Each step computes
    ``loss = rc_loss + kl_weight * kl_loss`` where ``rc_loss`` is
    :func:`reconstruction_loss` (``rc_loss='mse'`` or ``'bce'``) and ``kl_loss`` is the
    closed-form :func:`~common.losses.kl_divergence` of N(mean, exp(logvar)) from N(0, I),
    both averaged over every element as the book does (so its ``kl_weight=0.01`` keeps its
    meaning). Metrics ``loss``, ``rc_loss``, ``kl_loss`` (``val_*`` with validation data).
    Data: images, or ``(input, target)`` pairs. Under a ``tf.distribute`` strategy the loss
    is divided by the number of replicas before the gradient (the optimizer sums them).
    """

    def __init__(self, encoder, decoder, kl_weight: float = 0.01, rc_loss: str = "mse",
                 name: str = "vae", **kwargs):
        super().__init__(name=name, **kwargs)
        if rc_loss not in ("mse", "bce"):
            raise ValueError(f"rc_loss must be 'mse' or 'bce', got {rc_loss!r}")
        self.encoder, self.decoder = encoder, decoder
        self.kl_weight, self.rc_kind = float(kl_weight), rc_loss
        self.trackers = {n: keras.metrics.Mean(name=n) for n in ("loss", "rc_loss", "kl_loss")}
        # encoder and decoder arrive built; mark the wrapper built too, so weights can be
        # saved even though train_step never calls self(x)
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        self.built = True

    def call(self, x, training=False):
        """Reconstruct ``x`` through a sampled latent code."""
        z, _, _ = self.encoder(x, training=training)
        return self.decoder(z, training=training)

    def encode(self, x):
        """The mean of q(z|x): a deterministic latent code."""
        return self.encoder(x, training=False)[1]

    def decode(self, z):
        """Images from latent codes."""
        return self.decoder(z, training=False)

    def compute_vae_losses(self, x, target=None, training: bool = False):
        """``(loss, rc_loss, kl_loss)`` of one batch (``target`` defaults to ``x``)."""
        pass

        target = x if target is None else target
        z, mean, logvar = self.encoder(x, training=training)
        x_hat = self.decoder(z, training=training)
        rc = reconstruction_loss(target, x_hat, self.rc_kind)
        kl = kl_divergence(mean, logvar)
        return rc + self.kl_weight * kl, rc, kl

    @staticmethod
    def _unpack(data):
        if isinstance(data, (tuple, list)):
            return data[0], (data[1] if len(data) > 1 else data[0])
        return data, data

    def _update(self, total, rc, kl):
        for key, value in (("loss", total), ("rc_loss", rc), ("kl_loss", kl)):
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}

    def train_step(self, data):
        x, target = self._unpack(data)
        replicas = float(self.distribute_strategy.num_replicas_in_sync)
        with tf.GradientTape() as tape:
            total, rc, kl = self.compute_vae_losses(x, target, training=True)
            scaled = total / replicas
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update(total, rc, kl)

    def test_step(self, data):
        x, target = self._unpack(data)
        return self._update(*self.compute_vae_losses(x, target, training=False))

    def get_config(self):
        return {"kl_weight": self.kl_weight, "rc_loss": self.rc_kind}


def _numpy(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _images(batch):
    """The images of a batch that may be ``x``, ``(x, target)`` or ``(x, attributes)``."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def encode_mean(encoder, x) -> np.ndarray:
    """Mean of q(z|x) for a batch of images, as a numpy array (B, z_dim)."""
    out = encoder(x, training=False)
    return _numpy(out[1] if isinstance(out, (tuple, list)) else out)


@dataclass
class LatentStats:
    """Per-dimension mean of the encoder means (``mean``, shape (z_dim,)), per-dimension
    mean of the encoder standard deviations (``sigma``) and their average ``sigma_bar``."""
    mean: np.ndarray
    sigma: np.ndarray
    sigma_bar: float
    count: int


def latent_statistics(encoder, batches, max_batches: int | None = None) -> LatentStats:
    """One pass over ``batches`` (a dataset or iterable of image batches or ``(x, ...)``
    tuples): average of mean(x) and of sigma(x) = exp(0.5 * logvar(x)) over all images."""
    total_mean = total_sigma = None
    count = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        _, mean, logvar = encoder(_images(batch), training=False)
        mean, sigma = _numpy(mean).astype(np.float64), np.exp(0.5 * _numpy(logvar).astype(np.float64))
        if total_mean is None:
            total_mean, total_sigma = np.zeros(mean.shape[1]), np.zeros(mean.shape[1])
        total_mean += mean.sum(0)
        total_sigma += sigma.sum(0)
        count += len(mean)
    if not count:
        raise ValueError("latent_statistics got no images")
    sigma = (total_sigma / count).astype(np.float32)
    return LatentStats((total_mean / count).astype(np.float32), sigma, float(sigma.mean()), count)


def sample_latents(n: int, z_dim: int | None = None, stats: LatentStats | None = None,
                   seed=None) -> np.ndarray:
    """``n`` latent codes. Without ``stats``: z ~ N(0, I) (the VAE prior). With ``stats``
    (the sampling trick): z = stats.mean + stats.sigma_bar * eps, centred where the encoder
    puts real images and no wider than its typical spread."""
    if stats is not None:
        z_dim = len(stats.mean)
    if z_dim is None:
        raise ValueError("give z_dim or stats")
    eps = np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32)
    if stats is None:
        return eps
    return stats.mean[None, :] + np.float32(stats.sigma_bar) * eps


def attribute_vectors(encoder, batches, attribute_names, max_batches: int | None = None):
    """Attribute vectors v_a = mean(z | a) - mean(z | not a), z the encoder mean.

    ``batches`` yields ``(images, attributes)`` with ``attributes`` a dict name -> bool
    array (B,). One streaming pass keeps per-attribute sums and counts, so batches of any
    size give the same result as one big batch. Returns ``(vectors, counts)``: dicts name ->
    (z_dim,) float32 array and name -> (n_with, n_without). An attribute with no image on
    one side has no vector and is skipped with a warning.
    """
    names = list(attribute_names)
    sums = {}
    counts = {a: [0, 0] for a in names}
    for i, (images, attributes) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        z = encode_mean(encoder, images).astype(np.float64)
        for a in names:
            mask = _numpy(attributes[a]).astype(bool).reshape(-1)
            if a not in sums:
                sums[a] = [np.zeros(z.shape[1]), np.zeros(z.shape[1])]
            sums[a][0] += z[mask].sum(0)
            sums[a][1] += z[~mask].sum(0)
            counts[a][0] += int(mask.sum())
            counts[a][1] += int((~mask).sum())
    vectors = {}
    for a in names:
        n_with, n_without = counts[a]
        if not n_with or not n_without:
            warnings.warn(f"attribute {a!r} has {n_with} images with it and {n_without} without: "
                          f"no vector")
            continue
        vectors[a] = (sums[a][0] / n_with - sums[a][1] / n_without).astype(np.float32)
    return vectors, {a: tuple(c) for a, c in counts.items()}


def save_vectors(path, vectors) -> str:
    """Save a dict name -> vector to an ``.npz`` file."""
    np.savez(path, **{k: np.asarray(v) for k, v in vectors.items()})
    return str(path)


def load_vectors(path) -> dict:
    """Read back what :func:`save_vectors` wrote."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def edit_latent(z, vectors, weights) -> np.ndarray:
    """z + sum over attributes of weights[a] * vectors[a] (z may be (z_dim,) or a batch)."""
    out = np.array(z, dtype=np.float32, copy=True)
    for name, w in weights.items():
        if w:
            out = out + np.float32(w) * np.asarray(vectors[name], np.float32)
    return out


def latent_scatter(z, labels, ax=None, title: str | None = None, s: float = 6):
    """Scatter plot of 2-D codes, one colour per class (a categorical colour map) with a
    legend, and equal axis scales."""
    z, labels = np.asarray(z), np.asarray(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    cmap = plt.get_cmap("tab10")
    for k, c in enumerate(np.unique(labels)):
        sel = labels == c
        ax.scatter(z[sel, 0], z[sel, 1], s=s, color=cmap(k % 10), label=str(c))
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(markerscale=2, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        ax.set_title(title)
    return ax


def latent_sweep(decoder, low: float = -5.0, high: float = 5.0, n: int = 11) -> np.ndarray:
    """Decode an n x n grid of 2-D codes with ``n`` evenly spaced values from ``low`` to
    ``high`` inclusive: z1 varies along the columns, z2 along the rows, increasing upward.
    Returns the images as an array (n, n, H, W, C): row 0 is the top (largest z2)."""
    values = np.linspace(low, high, n, dtype=np.float32)
    z1, z2 = np.meshgrid(values, values[::-1])
    codes = np.stack([z1.ravel(), z2.ravel()], axis=1)
    images = _numpy(decoder(codes, training=False))
    return images.reshape(n, n, *images.shape[1:])


def plot_latent_sweep(decoder, low: float = -5.0, high: float = 5.0, n: int = 11, ax=None,
                      title: str | None = None):
    """Show :func:`latent_sweep` as one picture with the z1 / z2 values on the axes."""
    grid = latent_sweep(decoder, low, high, n)
    rows, cols, h, w, c = grid.shape
    canvas = grid.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None,
              vmin=0, vmax=1, extent=(low - 0.5 * (high - low) / max(n - 1, 1),
                                      high + 0.5 * (high - low) / max(n - 1, 1),
                                      low - 0.5 * (high - low) / max(n - 1, 1),
                                      high + 0.5 * (high - low) / max(n - 1, 1)))
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    if title:
        ax.set_title(title)
    return ax
