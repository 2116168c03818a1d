"""Chapter 3: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import tensorflow as tf
import keras
from keras import ops
import json
import os
from pathlib import Path
import numpy as np
import math


def _bce(label: float, outputs, from_logits: bool):
    """Mean binary cross-entropy of ``outputs`` against a constant ``label``."""
    outputs = ops.cast(ops.convert_to_tensor(outputs), "float32")  # float32 under mixed precision
    targets = ops.full(ops.shape(outputs), label, dtype=outputs.dtype)
    return ops.mean(keras.losses.binary_crossentropy(targets, outputs, from_logits=from_logits))


def discriminator_loss_bce(real_out, fake_out, from_logits: bool = False, real_label: float = 1.0):
    """Discriminator loss of the original GAN: ``0.5 * [BCE(real_label, D(x)) + BCE(0, D(G(z)))]``.

    Real and fake halves are separate, equal-size minibatches; the average of their means is
    returned. ``real_label=0.9`` is one-sided label smoothing (Salimans et al. 2016): the loss
    on perfectly classified inputs is then above zero, so D is not pushed to extreme outputs.
    """
    return 0.5 * (_bce(real_label, real_out, from_logits) + _bce(0.0, fake_out, from_logits))


def generator_loss_bce(fake_out, from_logits: bool = False):
    """Non-saturating generator loss ``BCE(1, D(G(z))) = -mean log D(G(z))``.

    Fake images are given the "real" label: maximising log D(G(z)) instead of minimising
    log(1 - D(G(z))) keeps a strong gradient when D rejects the fakes early in training.
    """
    return _bce(1.0, fake_out, from_logits)


def wasserstein_loss(y_true, y_pred):
    """Keras-style Wasserstein loss ``-mean(y_true * y_pred)`` with labels +1 real, -1 fake."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    return -ops.mean(y_true * y_pred)


def critic_loss_wasserstein(real_out, fake_out):
    """Critic loss ``mean D(G(z)) - mean D(x)``: minimising it widens the critic's estimate of
    the earth mover's distance between real and generated data."""
    return ops.mean(ops.cast(fake_out, "float32")) - ops.mean(ops.cast(real_out, "float32"))


def generator_loss_wasserstein(fake_out):
    """Generator loss of WGAN, ``-mean D(G(z))``."""
    return -ops.mean(ops.cast(fake_out, "float32"))


def gradient_penalty(critic, real, fake, training: bool = True, seed=None, epsilon: float = 1e-12):
    """WGAN-GP penalty ``mean[(||grad_x D(x_hat)||_2 - 1)^2]`` (the caller multiplies by lambda).

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample (shape
    ``(B, 1, ..., 1)``); the gradient's L2 norm is taken over every non-batch axis. Call this
    inside the tape that differentiates the critic loss: the penalty is then differentiated
    with respect to the critic's weights as well (second-order back-propagation).
    ``epsilon`` keeps the square root differentiable where a gradient is exactly zero.
    """
    real = tf.convert_to_tensor(real)
    fake = tf.cast(tf.convert_to_tensor(fake), real.dtype)
    batch = tf.shape(real)[0]
    eps_shape = tf.concat([[batch], tf.ones([tf.rank(real) - 1], tf.int32)], axis=0)
    if seed is None:
        eps = tf.random.uniform(eps_shape, 0.0, 1.0, dtype=real.dtype)
    else:
        eps = tf.random.stateless_uniform(eps_shape, seed=seed, dtype=real.dtype)
    x_hat = eps * real + (1.0 - eps) * fake
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        scores = critic(x_hat, training=training)
    grads = tape.gradient(scores, x_hat)
    norms = gradient_norms(grads, epsilon)
    return tf.reduce_mean(tf.square(norms - 1.0))


def gradient_norms(grads, epsilon: float = 1e-12):
    """Per-sample L2 norm of a batch of gradients over every non-batch axis."""
    flat = tf.reshape(grads, [tf.shape(grads)[0], -1])
    return tf.sqrt(tf.reduce_sum(tf.square(flat), axis=1) + epsilon)


@keras.saving.register_keras_serializable(package="common")
class ClipConstraint(keras.constraints.Constraint):
    """Keep a weight inside ``[-clip_value, clip_value]`` after every optimizer update: the
    crude 1-Lipschitz device of the original WGAN (Arjovsky et al. 2017)."""

    def __init__(self, clip_value: float = 0.01):
        self.clip_value = float(clip_value)

    def __call__(self, w):
        return keras.ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


def _tf_variable(v):
    return v.value if isinstance(v, keras.Variable) else v


def clip_weights(model, clip_value: float = 0.01) -> None:
    """Clip every **trainable** variable of ``model`` to ``[-clip_value, clip_value]``.

    Batch-norm moving means and variances are not trainable and are left alone (the book's
    loop over ``get_weights()`` clipped them too). Works eagerly, inside a ``tf.function``
    and in a ``tf.distribute`` replica context, where the assignment is made once per
    mirrored variable through the strategy.
    """
    variables = [_tf_variable(v) for v in model.trainable_variables]

    def clip_all(strategy, variables):
        for var in variables:
            strategy.extended.update(
                var, lambda v: v.assign(tf.clip_by_value(v, -clip_value, clip_value)), group=False
            )

    if tf.distribute.in_cross_replica_context():
        clip_all(tf.distribute.get_strategy(), variables)
    else:
        tf.distribute.get_replica_context().merge_call(clip_all, args=(variables,))


class GAN(keras.Model):
    """Adversarial training of ``generator`` against ``discriminator`` with ``fit``.

    One ``train_step`` makes ``n_critic`` discriminator updates, each on a different real
    minibatch with fresh noise, then one generator update. Feed ``fit`` batches of
    ``n_critic * B`` images (``B`` per update); they are split by interleaving (row ``i`` goes
    to update ``i % n_critic``), which keeps the minibatches the same when a
    ``tf.distribute`` strategy splits the global batch between replicas. The data may also
    be ``(images, z)`` pairs to fix the noise (then ``z`` has one row per image); drop class
    labels before ``fit``.

    Options: ``loss`` ``'bce'`` (discriminator outputs probabilities, or logits with
    ``from_logits=True``) or ``'wasserstein'`` (a critic with a linear output);
    ``lipschitz`` ``None``, ``'clip'`` (clip the critic's trainable weights to
    ``clip_value`` after each update) or ``'gp'`` (add ``gp_weight`` times the gradient
    penalty); ``noise`` ``'normal'`` (N(0, I)) or ``'uniform'`` (U[0, 1)).

    Distribution: build the networks, the ``GAN`` and the optimizers under
    ``strategy.scope()``. Each replica's loss is a mean over its share of the batch and is
    divided by the number of replicas before differentiation; the optimizer sums the
    replicas' gradients, giving the gradient of the global-batch mean. (Batch norm still
    uses per-replica statistics unless built with ``synchronized=True``.)
    """

    def __init__(self, generator, discriminator, latent_dim: int | None = None, *,
                 loss: str = "bce", n_critic: int = 1, lipschitz: str | None = None,
                 clip_value: float = 0.01, gp_weight: float = 10.0, noise: str = "normal",
                 from_logits: bool = False, name: str = "gan", **kwargs):
        super().__init__(name=name, **kwargs)
        if loss not in ("bce", "wasserstein"):
            raise ValueError(f"loss must be 'bce' or 'wasserstein', got {loss!r}")
        if lipschitz not in (None, "clip", "gp"):
            raise ValueError(f"lipschitz must be None, 'clip' or 'gp', got {lipschitz!r}")
        if noise not in ("normal", "uniform"):
            raise ValueError(f"noise must be 'normal' or 'uniform', got {noise!r}")
        if int(n_critic) < 1:
            raise ValueError("n_critic must be at least 1")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim or generator.input_shape[-1])
        self.loss_kind, self.n_critic, self.lipschitz = loss, int(n_critic), lipschitz
        self.clip_value, self.gp_weight = float(clip_value), float(gp_weight)
        self.noise, self.from_logits = noise, bool(from_logits)
        if self.loss_kind == "bce":
            names = ["d_loss", "g_loss", "d_acc_real", "d_acc_fake"]
        else:
            names = ["critic_loss", "critic_real", "critic_fake", "g_loss"]
        if lipschitz == "gp":
            names.append("gp")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.built = True  # the two networks are built already; fit must not trace call()

    # -- Keras plumbing ---------------------------------------------------------------------
    def compile(self, d_optimizer=None, g_optimizer=None, d_loss_fn=None, g_loss_fn=None,
                jit_compile=False, **kwargs):
        """Set the two optimizers (RMSprop 3e-4 each when omitted) and, optionally, the loss
        functions ``d_loss_fn(real_out, fake_out)`` and ``g_loss_fn(fake_out)``; the
        defaults follow ``loss``. Both optimizers are built here, so a checkpoint can be
        restored straight after ``compile``."""
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.RMSprop(3e-4)
        self.g_optimizer = g_optimizer or keras.optimizers.RMSprop(3e-4)
        if self.loss_kind == "bce":
            self.d_loss_fn = d_loss_fn or (
                lambda r, f: discriminator_loss_bce(r, f, from_logits=self.from_logits))
            self.g_loss_fn = g_loss_fn or (
                lambda f: generator_loss_bce(f, from_logits=self.from_logits))
        else:
            self.d_loss_fn = d_loss_fn or critic_loss_wasserstein
            self.g_loss_fn = g_loss_fn or generator_loss_wasserstein
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, z, training=False):
        """Generate images from latent codes."""
        return self.generator(z, training=training)

    def get_config(self):
        return {"latent_dim": self.latent_dim, "loss": self.loss_kind, "n_critic": self.n_critic,
                "lipschitz": self.lipschitz, "clip_value": self.clip_value,
                "gp_weight": self.gp_weight, "noise": self.noise, "from_logits": self.from_logits}

    # -- pieces of a step -------------------------------------------------------------------
    def sample_noise(self, n):
        """``n`` latent codes from the training noise distribution."""
        shape = tf.stack([n, self.latent_dim])
        if self.noise == "uniform":
            return tf.random.uniform(shape)
        return tf.random.normal(shape)

    @property
    def _replicas(self) -> float:
        return float(self.distribute_strategy.num_replicas_in_sync)

    def _accuracy(self, outputs, target: float):
        threshold = 0.0 if self.from_logits else 0.5
        predicted = tf.cast(tf.cast(outputs, tf.float32) > threshold, tf.float32)
        return tf.reduce_mean(tf.cast(tf.equal(predicted, target), tf.float32))

    def discriminator_step(self, real, z):
        """One discriminator (critic) update on a real minibatch and noise ``z``; only the
        discriminator's trainable variables change. Returns a dict of scalars."""
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            real_out = self.discriminator(real, training=True)
            fake_out = self.discriminator(fake, training=True)
            d_loss = self.d_loss_fn(real_out, fake_out)
            total = d_loss
            if self.lipschitz == "gp":
                gp = gradient_penalty(self.discriminator, real, fake)
                total = total + self.gp_weight * gp
            scaled = total / self._replicas
        variables = self.discriminator.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.d_optimizer.apply_gradients(zip(grads, variables))
        if self.lipschitz == "clip":
            clip_weights(self.discriminator, self.clip_value)
        if self.loss_kind == "bce":
            out = {"d_loss": d_loss, "d_acc_real": self._accuracy(real_out, 1.0),
                   "d_acc_fake": self._accuracy(fake_out, 0.0)}
        else:
            out = {"critic_loss": d_loss, "critic_real": -tf.reduce_mean(real_out),
                   "critic_fake": tf.reduce_mean(fake_out)}
        if self.lipschitz == "gp":
            out["gp"] = gp
        return out

    def generator_step(self, z):
        """One generator update on noise ``z``: the gradient flows through the discriminator
        but is applied to the generator's trainable variables only."""
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            fake_out = self.discriminator(fake, training=True)
            g_loss = self.g_loss_fn(fake_out)
            scaled = g_loss / self._replicas
        variables = self.generator.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return {"g_loss": g_loss}

    def _split(self, tensor):
        """Interleaved split of a batch into ``n_critic`` equal minibatches."""
        if self.n_critic == 1:
            return [tensor]
        shape = tf.shape(tensor)
        grouped = tf.reshape(tensor, tf.concat([[-1, self.n_critic], shape[1:]], axis=0))
        return [grouped[:, k] for k in range(self.n_critic)]

    def train_step(self, data):
        if isinstance(data, (tuple, list)):
            real, z = data[0], (data[1] if len(data) > 1 else None)
        else:
            real, z = data, None
        reals = self._split(real)
        batch = tf.shape(reals[0])[0]
        zs = self._split(z) if z is not None else [None] * self.n_critic
        for real_k, z_k in zip(reals, zs):
            z_k = self.sample_noise(batch) if z_k is None else z_k
            for key, value in self.discriminator_step(real_k, z_k).items():
                self.trackers[key].update_state(value)
        z_g = self.sample_noise(batch) if z is None else zs[0]
        for key, value in self.generator_step(z_g).items():
            self.trackers[key].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class WGAN(GAN):
    """:class:`GAN` with the Wasserstein defaults: ``loss='wasserstein'``, ``n_critic=5``,
    ``lipschitz='gp'`` (use ``'clip'`` for the original WGAN)."""

    def __init__(self, generator, discriminator, latent_dim=None, *, lipschitz="gp",
                 n_critic: int = 5, name: str = "wgan", **kwargs):
        super().__init__(generator, discriminator, latent_dim, loss="wasserstein",
                         n_critic=n_critic, lipschitz=lipschitz, name=name, **kwargs)


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
