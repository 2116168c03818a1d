"""Chapter 4: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import tensorflow as tf
from keras import layers
from common.ch02 import GaussianSampling, kl_divergence
from common.ch03 import discriminator_loss_bce, generator_loss_bce


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


def lsgan_d_loss(real_out, fake_out, half: bool = True):
    """Least-squares discriminator loss ``mean (D(x) - 1)^2 + mean D(G(z))^2``, times 0.5
    when ``half`` (CycleGAN's discriminators; BicycleGAN's book code has no 0.5). The targets
    take the shape of the discriminator's output, so it works for patch maps of any size.
    Mao et al. 2017, "Least Squares Generative Adversarial Networks"."""
    real_out = ops.convert_to_tensor(real_out)
    fake_out = ops.cast(ops.convert_to_tensor(fake_out), real_out.dtype)
    total = ops.mean(ops.square(real_out - 1.0)) + ops.mean(ops.square(fake_out))
    return 0.5 * total if half else total


def lsgan_g_loss(fake_out):
    """Least-squares generator loss ``mean (D(G(z)) - 1)^2`` (fakes pushed to the real target)."""
    fake_out = ops.convert_to_tensor(fake_out)
    return ops.mean(ops.square(fake_out - 1.0))


def l1_loss(target, output):
    """Mean absolute error ``mean |target - output|`` over every element (the L1 term of
    pix2pix, CycleGAN's cycle and identity losses, BicycleGAN's image and latent terms)."""
    output = ops.convert_to_tensor(output)
    target = ops.cast(ops.convert_to_tensor(target), output.dtype)
    return ops.mean(ops.abs(target - output))


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def _block(stages, norm, activation, dropout, name):
    """Append the optional instance norm -> LeakyReLU(0.2) -> Dropout(0.5) tail shared by the
    down- and up-sampling blocks."""
    if norm:
        stages.append(InstanceNormalization())
    if activation:
        stages.append(layers.LeakyReLU(negative_slope=0.2))
    if dropout:
        stages.append(layers.Dropout(0.5))
    return keras.Sequential(stages, name=name)


def downsample_block(filters: int, kernel: int = 4, strides: int = 2, norm: bool = True,
                     activation: bool = True, dropout: bool = False, name: str | None = None):
    """Conv2D (``kernel``, ``strides``, 'same', no bias, weights ~ N(0, 0.02)) -> instance
    norm -> LeakyReLU(0.2) -> Dropout(0.5), each stage optional. With stride 2 the height
    and width halve. Returned as a ``keras.Sequential`` so a summary shows it as one row."""
    stages = [layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            kernel_initializer=_init())]
    return _block(stages, norm, activation, dropout, name)


def upsample_block(filters: int, kernel: int = 4, norm: bool = True, activation: bool = True,
                   dropout: bool = False, name: str | None = None):
    """UpSampling2D x2 (nearest neighbour) -> Conv2D (``kernel``, stride 1, 'same', no bias,
    N(0, 0.02)) -> instance norm -> LeakyReLU(0.2) -> Dropout(0.5): height and width double.
    Up-sampling then convolving avoids the checkerboard artefacts of transposed convolutions."""
    stages = [layers.UpSampling2D(2),
              layers.Conv2D(filters, kernel, strides=1, padding="same", use_bias=False,
                            kernel_initializer=_init())]
    return _block(stages, norm, activation, dropout, name)


def unet_generator(image_shape=(256, 256, 3), base_filters: int = 64, z_dim: int = 0,
                   out_channels: int | None = None, name: str = "unet_generator"):
    """The book's pix2pix U-Net (Ronneberger et al. 2015; Isola et al. 2017).

    Seven stride-2 down-sampling blocks (``b, 2b, 4b, 4b, 4b, 4b, 4b`` filters with
    ``b = base_filters``; the first without normalisation) and six up-sampling blocks
    (``4b`` x4, ``2b``, ``b``; dropout 0.5 on the first three), each followed by the
    concatenation of the encoder output of the same resolution, then an up-sampling
    convolution to ``out_channels`` (default: the input's) with tanh. The side of the
    image must be divisible by 128 (256 -> 2x2 bottleneck, 128 -> 1x1).
    With ``z_dim > 0`` the model takes ``[image, z]`` and concatenates the code, tiled over
    the image by :class:`~common.layers.TileLatent`, to the image (BicycleGAN).
    13,514,880 parameters at 256x256x3 and ``b = 64`` (13,523,072 with ``z_dim = 8``).
    """
    h, w, c = image_shape
    if h is not None and (h % 128 or w % 128):
        raise ValueError(f"the U-Net needs a side divisible by 128, got {image_shape}")
    out_channels = out_channels or c
    b = base_filters
    image = keras.Input(image_shape, name="image")
    inputs = image
    x = image
    if z_dim:
        z = keras.Input((z_dim,), name="z")
        inputs = [image, z]
        x = layers.Concatenate(name="image_and_z")([image, TileLatent(name="tile_z")([z, image])])
    skips = []
    for i, filters in enumerate([b, 2 * b, 4 * b, 4 * b, 4 * b, 4 * b, 4 * b], start=1):
        x = downsample_block(filters, norm=(i > 1), name=f"down{i}")(x)
        skips.append(x)
    skips = skips[:-1][::-1]  # d6, d5, ..., d1: joined to u6, u5, ..., u1
    ups = [(4 * b, True), (4 * b, True), (4 * b, True), (4 * b, False), (2 * b, False), (b, False)]
    for (filters, dropout), skip, level in zip(ups, skips, range(6, 0, -1)):
        x = upsample_block(filters, dropout=dropout, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skip])
    x = upsample_block(out_channels, norm=False, activation=False, name="to_image")(x)
    output = layers.Activation("tanh", name="tanh")(x)
    return keras.Model(inputs, output, name=name)


def patchgan_discriminator(image_shape=(256, 256, 3), conditional: bool = True,
                           sigmoid: bool = True, base_filters: int = 64, norm: bool = True,
                           paper_padding: bool = True, name: str = "patchgan"):
    """The 70x70 PatchGAN (Isola et al. 2017): a map of real/fake scores, each looking at one
    70x70 patch of the input, neighbours 8 pixels apart.

    Three stride-2 blocks (``b, 2b, 4b``; the first without normalisation), a stride-1 block
    of ``8b`` filters and a final stride-1 4x4 convolution to one channel. ``conditional``:
    inputs ``[A, B]`` joined on the channel axis (pix2pix), else one image (CycleGAN,
    BicycleGAN). ``sigmoid``: probabilities (BCE) rather than raw scores (LSGAN).
    ``paper_padding=True`` zero-pads by one before each of the last two convolutions, which
    then use 'valid' padding, as the pix2pix paper and TensorFlow's tutorial do: 256 -> 30x30.
    ``False`` is the book's variant ('same' stride-1 block, 'valid' last layer): 29x29.
    Padding has no weights, so both have 2,768,641 parameters (conditional, b = 64) or
    2,765,569 (one input). ``norm=False`` drops instance norm (for receptive-field plots).
    """
    b = base_filters
    if conditional:
        a_in = keras.Input(image_shape, name="input_image")
        b_in = keras.Input(image_shape, name="target_image")
        inputs = [a_in, b_in]
        x = layers.Concatenate(name="input_and_target")(inputs)
    else:
        inputs = keras.Input(image_shape, name="image")
        x = inputs
    x = downsample_block(b, norm=False, name="down1")(x)
    x = downsample_block(2 * b, norm=norm, name="down2")(x)
    x = downsample_block(4 * b, norm=norm, name="down3")(x)
    if paper_padding:
        x = layers.ZeroPadding2D(1, name="pad1")(x)
        x = layers.Conv2D(8 * b, 4, strides=1, padding="valid", use_bias=False,
                          kernel_initializer=_init(), name="conv4")(x)
        if norm:
            x = InstanceNormalization(name="norm4")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name="act4")(x)
        x = layers.ZeroPadding2D(1, name="pad2")(x)
    else:
        x = downsample_block(8 * b, strides=1, norm=norm, name="down4")(x)
    x = layers.Conv2D(1, 4, strides=1, padding="valid", kernel_initializer=_init(),
                      name="patch_scores")(x)
    if sigmoid:
        x = layers.Activation("sigmoid", name="sigmoid")(x)
    return keras.Model(inputs, x, name=name)


def bicycle_encoder(image_shape=(256, 256, 3), z_dim: int = 8, base_filters: int = 64,
                    name: str = "encoder"):
    """BicycleGAN's encoder E(B) -> (mu, log sigma^2): six stride-2 down-sampling blocks
    (``b, 2b, 4b, 8b, 8b, 8b``; the first without normalisation), flatten, and two Dense
    layers of ``z_dim`` units. 11,279,120 parameters at 256x256x3, ``b = 64``, ``z_dim = 8``."""
    b = base_filters
    image = keras.Input(image_shape, name="image")
    x = image
    for i, filters in enumerate([b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b], start=1):
        x = downsample_block(filters, norm=(i > 1), name=f"down{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    mean = layers.Dense(z_dim, name="mean")(x)
    logvar = layers.Dense(z_dim, name="logvar")(x)
    return keras.Model(image, [mean, logvar], name=name)


def _label_path(labels, num_classes: int, mode: str, units: int | None):
    """Integer labels ``(B, 1)`` -> a one-hot (optionally projected by Dense(units)) or an
    embedding of ``units`` (or ``num_classes``) values."""
    if mode == "onehot":
        x = layers.CategoryEncoding(num_tokens=num_classes, output_mode="one_hot",
                                    name="one_hot")(labels)
        if units:
            x = layers.Dense(units, name="label_dense")(x)
        return x
    if mode == "embedding":
        x = layers.Embedding(num_classes, units or num_classes, name="label_embedding")(labels)
        return layers.Flatten(name="label_flat")(x)
    raise ValueError(f"label_mode must be 'onehot' or 'embedding', got {mode!r}")


def conditional_dcgan_generator(z_dim: int = 100, num_classes: int = 10, width: int = 64,
                                image_shape=(32, 32, 1), label_mode: str = "onehot",
                                name: str = "cgan_generator"):
    """Conditional DCGAN generator G([z, label]) (Mirza & Osindero 2014 on a DCGAN).

    The label (an integer of shape (1,)) becomes a one-hot vector (``label_mode='onehot'``)
    or a learned ``num_classes``-vector (``'embedding'``), joined to z; Dense to 4x4x4W,
    then three times up-sampling x2 (bilinear) and a 5x5 convolution: ``2W`` and ``W`` with
    batch norm and LeakyReLU(0.2), and finally the image's channels with tanh.
    1,481,217 parameters for W = 64, 5,010,433 for W = 128 (one-hot, 32x32x1)."""
    z = keras.Input((z_dim,), name="z")
    label = keras.Input((1,), dtype="int32", name="label")
    x = layers.Concatenate(name="z_and_label")([z, _label_path(label, num_classes, label_mode,
                                                                None)])
    side = image_shape[0] // 8
    x = layers.Dense(side * side * 4 * width, name="project")(x)
    x = layers.Reshape((side, side, 4 * width), name="to_grid")(x)
    for i, filters in enumerate([2 * width, width], start=1):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{i}")(x)
        x = layers.Conv2D(filters, 5, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"act{i}")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name="up3")(x)
    image = layers.Conv2D(image_shape[-1], 5, padding="same", activation="tanh",
                          name="to_image")(x)
    return keras.Model([z, label], image, name=name)


def conditional_dcgan_discriminator(num_classes: int = 10, width: int = 64,
                                    image_shape=(32, 32, 1), label_mode: str = "onehot",
                                    name: str = "cgan_discriminator"):
    """Conditional DCGAN discriminator D([image, label]) -> probability of being real.

    ``label_mode='onehot'``: the one-hot label is projected by Dense(H*W) to an H x W x 1
    map and concatenated to the image as an extra channel (book's MNIST model).
    ``'embedding'``: an Embedding(num_classes, H*W) map multiplies the image element-wise
    (book's Fashion-MNIST model). Then three 5x5 stride-2 convolutions (``W, 2W, 4W``;
    batch norm on the last two; LeakyReLU 0.2), flatten, Dense(1, sigmoid).
    1,044,545 parameters (one-hot, W = 64); 4,121,601 (embedding, W = 128)."""
    h, w, c = image_shape
    image = keras.Input(image_shape, name="image")
    label = keras.Input((1,), dtype="int32", name="label")
    label_map = layers.Reshape((h, w, 1), name="label_map")(
        _label_path(label, num_classes, label_mode, h * w))
    if label_mode == "onehot":
        x = layers.Concatenate(name="image_and_label")([image, label_map])
    else:
        x = layers.Multiply(name="image_times_label")([image, label_map])
    for i, filters in enumerate([width, 2 * width, 4 * width], start=1):
        x = layers.Conv2D(filters, 5, strides=2, padding="same", name=f"conv{i}")(x)
        if i > 1:
            x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.LeakyReLU(negative_slope=0.2, name=f"act{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    out = layers.Dense(1, activation="sigmoid", name="real_prob")(x)
    return keras.Model([image, label], out, name=name)


def _adam(learning_rate=2e-4, beta_1=0.5, beta_2=0.999):
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2)


class _Translator(keras.Model):
    """Plumbing shared by the training models: named networks, one optimizer each, loss
    trackers, and ``train_step`` = ``discriminator_step`` then ``generator_step``."""

    networks: tuple = ()
    metric_names: tuple = ()

    def _setup(self):
        self.trackers = {n: keras.metrics.Mean(name=n) for n in self.metric_names}
        self.built = True  # the networks are built already; fit must not trace call()

    def compile(self, optimizers=None, jit_compile=False, **kwargs):
        """``optimizers``: dict network name -> optimizer (defaults per class). Each
        optimizer is built on its own network's variables here."""
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        given = dict(optimizers or {})
        unknown = set(given) - set(self.networks)
        if unknown:
            raise KeyError(f"no network named {sorted(unknown)}; choose from {self.networks}")
        self.optimizers = {}
        for net in self.networks:
            opt = given.get(net) or self.default_optimizer()
            opt.build(getattr(self, net).trainable_variables)
            self.optimizers[net] = opt

    def default_optimizer(self):
        return _adam()

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def _replicas(self) -> float:
        return float(self.distribute_strategy.num_replicas_in_sync)

    def _apply(self, tape, loss, net: str):
        """Differentiate ``loss`` (divided by the replica count) with respect to network
        ``net``'s trainable variables and apply it with ``net``'s optimizer only."""
        variables = getattr(self, net).trainable_variables
        grads = tape.gradient(loss, variables)
        scale = 1.0 / self._replicas  # the optimizer sums the replicas' gradients
        grads = [g if g is None or scale == 1.0 else g * scale for g in grads]
        self.optimizers[net].apply_gradients(zip(grads, variables))

    def train_step(self, data):
        # (x, y) from a dataset, (x, y, None) from train_on_batch; numpy when run eagerly
        data = tuple(tf.convert_to_tensor(d) for d in data if d is not None)
        logs = dict(self.discriminator_step(data))
        logs.update(self.generator_step(data))
        for key, value in logs.items():
            self.trackers[key].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class ConditionalGAN(_Translator):
    """Conditional GAN (Mirza & Osindero 2014, "Conditional Generative Adversarial Nets")
    with the DCGAN losses. Data: batches of ``(images, labels)``.

    Discriminator step: real images with their true labels against fakes made from fresh
    noise and uniformly drawn labels, loss ``0.5 [BCE(1, D(x, y)) + BCE(0, D(G(z, y'), y'))]``.
    Generator step: new noise and labels, non-saturating loss ``BCE(1, D(G(z, y'), y'))``.
    Default optimizers: RMSprop(1e-4) for both, as in the book's notebook."""

    networks = ("generator", "discriminator")
    metric_names = ("d_loss", "g_loss")

    def __init__(self, generator, discriminator, latent_dim: int | None = None,
                 num_classes: int = 10, name: str = "conditional_gan", **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.latent_dim = int(latent_dim or generator.inputs[0].shape[-1])
        self.num_classes = int(num_classes)
        self._setup()

    def default_optimizer(self):
        return keras.optimizers.RMSprop(learning_rate=1e-4)

    def call(self, inputs, training=False):
        """Generate images from ``[z, labels]``."""
        return self.generator(inputs, training=training)

    def sample_inputs(self, n):
        z = tf.random.normal(tf.stack([n, self.latent_dim]))
        labels = tf.random.uniform(tf.stack([n, 1]), 0, self.num_classes, dtype=tf.int32)
        return z, labels

    @staticmethod
    def _unpack(data):
        images, labels = data[0], data[1]
        return images, tf.reshape(tf.cast(labels, tf.int32), (-1, 1))

    def discriminator_step(self, data):
        images, labels = self._unpack(data)
        z, fake_labels = self.sample_inputs(tf.shape(images)[0])
        with tf.GradientTape() as tape:
            fakes = self.generator([z, fake_labels], training=True)
            real_out = self.discriminator([images, labels], training=True)
            fake_out = self.discriminator([fakes, fake_labels], training=True)
            d_loss = discriminator_loss_bce(real_out, fake_out)
        self._apply(tape, d_loss, "discriminator")
        return {"d_loss": d_loss}

    def generator_step(self, data):
        images, _ = self._unpack(data)
        z, fake_labels = self.sample_inputs(tf.shape(images)[0])
        with tf.GradientTape() as tape:
            fakes = self.generator([z, fake_labels], training=True)
            g_loss = generator_loss_bce(self.discriminator([fakes, fake_labels], training=True))
        self._apply(tape, g_loss, "generator")
        return {"g_loss": g_loss}


class Pix2Pix(_Translator):
    """pix2pix (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial
    Networks"). Data: batches of ``(A, B)`` pairs (input, target), values in [-1, 1].

    D (conditional PatchGAN with sigmoid) minimises ``0.5 [BCE(1, D(A, B)) + BCE(0, D(A, G(A)))]``
    averaged over its patch map; G minimises ``BCE(1, D(A, G(A))) + lambda_l1 * mean|B - G(A)|``
    (lambda_l1 = 100). G has no noise input: its randomness is dropout, active in training.
    Default optimizers: Adam(2e-4, beta_1 0.5, beta_2 0.9999) for each (the book's values)."""

    networks = ("generator", "discriminator")
    metric_names = ("d_loss", "g_adv", "g_l1", "g_loss")

    def __init__(self, generator, discriminator, lambda_l1: float = 100.0,
                 name: str = "pix2pix", **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.lambda_l1 = float(lambda_l1)
        self._setup()

    def default_optimizer(self):
        return _adam(2e-4, 0.5, 0.9999)

    def call(self, a, training=False):
        return self.generator(a, training=training)

    def discriminator_step(self, data):
        a, b = data[0], data[1]
        fake = self.generator(a, training=True)
        with tf.GradientTape() as tape:
            real_out = self.discriminator([a, b], training=True)
            fake_out = self.discriminator([a, fake], training=True)
            d_loss = discriminator_loss_bce(real_out, fake_out)
        self._apply(tape, d_loss, "discriminator")
        return {"d_loss": d_loss}

    def generator_step(self, data):
        a, b = data[0], data[1]
        with tf.GradientTape() as tape:
            fake = self.generator(a, training=True)
            g_adv = generator_loss_bce(self.discriminator([a, fake], training=True))
            g_l1 = l1_loss(b, fake)
            g_loss = g_adv + self.lambda_l1 * g_l1
        self._apply(tape, g_loss, "generator")
        return {"g_adv": g_adv, "g_l1": g_l1, "g_loss": g_loss}


class CycleGAN(_Translator):
    """CycleGAN (Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
    Adversarial Networks"). Data: batches of ``(a, b)`` from two domains, *not* paired.

    Networks ``g_ab`` (A -> B), ``g_ba`` (B -> A), ``d_a`` and ``d_b`` (one-input PatchGANs,
    linear output), one optimizer each. Least-squares losses: ``d_b`` minimises
    ``0.5 [mean(D_B(b) - 1)^2 + mean D_B(G_AB(a))^2]`` (``d_a`` likewise). The two generators
    minimise together
    ``mean(D_B(G_AB(a)) - 1)^2 + mean(D_A(G_BA(b)) - 1)^2
    + lambda_cycle (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|)
    + lambda_identity (|G_BA(a) - a| + |G_AB(b) - b|)``, L1 as means.
    The identity term is the paper's: a generator fed an image already in its output domain
    should leave it unchanged (the book compares G_AB(a) with the paired b instead, which
    needs paired data). Defaults lambda_cycle 10, lambda_identity 5, Adam(2e-4, 0.5)."""

    networks = ("g_ab", "g_ba", "d_a", "d_b")
    metric_names = ("d_a_loss", "d_b_loss", "g_adv", "cycle", "identity", "g_loss")

    def __init__(self, g_ab, g_ba, d_a, d_b, lambda_cycle: float = 10.0,
                 lambda_identity: float = 5.0, name: str = "cycle_gan", **kwargs):
        super().__init__(name=name, **kwargs)
        self.g_ab, self.g_ba, self.d_a, self.d_b = g_ab, g_ba, d_a, d_b
        self.lambda_cycle, self.lambda_identity = float(lambda_cycle), float(lambda_identity)
        self._setup()

    def call(self, a, training=False):
        return self.g_ab(a, training=training)

    def cycle_loss(self, a, b, training=False):
        """``|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|`` (each a mean)."""
        fake_b = self.g_ab(a, training=training)
        fake_a = self.g_ba(b, training=training)
        return (l1_loss(a, self.g_ba(fake_b, training=training))
                + l1_loss(b, self.g_ab(fake_a, training=training)))

    def discriminator_step(self, data):
        a, b = data[0], data[1]
        fake_b = self.g_ab(a, training=True)
        fake_a = self.g_ba(b, training=True)
        with tf.GradientTape(persistent=True) as tape:
            d_b_loss = lsgan_d_loss(self.d_b(b, training=True), self.d_b(fake_b, training=True))
            d_a_loss = lsgan_d_loss(self.d_a(a, training=True), self.d_a(fake_a, training=True))
        self._apply(tape, d_b_loss, "d_b")
        self._apply(tape, d_a_loss, "d_a")
        del tape
        return {"d_a_loss": d_a_loss, "d_b_loss": d_b_loss}

    def generator_step(self, data):
        a, b = data[0], data[1]
        with tf.GradientTape(persistent=True) as tape:
            fake_b = self.g_ab(a, training=True)
            fake_a = self.g_ba(b, training=True)
            g_adv = (lsgan_g_loss(self.d_b(fake_b, training=True))
                     + lsgan_g_loss(self.d_a(fake_a, training=True)))
            cycle = (l1_loss(a, self.g_ba(fake_b, training=True))
                     + l1_loss(b, self.g_ab(fake_a, training=True)))
            identity = (l1_loss(a, self.g_ba(a, training=True))
                        + l1_loss(b, self.g_ab(b, training=True)))
            g_loss = g_adv + self.lambda_cycle * cycle + self.lambda_identity * identity
        self._apply(tape, g_loss, "g_ab")
        self._apply(tape, g_loss, "g_ba")
        del tape
        return {"g_adv": g_adv, "cycle": cycle, "identity": identity, "g_loss": g_loss}


class BicycleGAN(_Translator):
    """BicycleGAN (Zhu et al. 2017, "Toward Multimodal Image-to-Image Translation"): one
    input, many plausible outputs, chosen by a latent code z.

    Data: batches of ``2n`` pairs ``(A, B)``; the first ``n`` train the cVAE-GAN
    (B -> z -> B^: ``(mu, log sigma^2) = E(B)``, z sampled by
    :class:`~common.layers.GaussianSampling`, ``B^ = G(A, z)``, judged by ``d1``), the other
    ``n`` the cLR-GAN (z ~ N(0, I) -> ``B^ = G(A, z)`` -> ``mu(E(B^))`` should give z back,
    judged by ``d2``). Discriminators: LSGAN without the 0.5. Encoder loss
    ``lambda_gan (GAN_vae + GAN_lr) + lambda_image |B - G(A, z_enc)| + lambda_kl KL``;
    generator loss: the same plus ``lambda_latent |z - mu(E(G(A, z)))|``. The latent term
    updates the generator only: the encoder would otherwise learn to agree with any output.
    KL is summed over the latent dimensions and averaged over the batch.
    Defaults: lambda_image 10, lambda_latent 0.5, lambda_kl 0.01, Adam(1e-4, 0.5) each."""

    networks = ("generator", "encoder", "d1", "d2")
    metric_names = ("d1_loss", "d2_loss", "gan_vae", "gan_lr", "l1_image", "l1_latent", "kl",
                    "e_loss", "g_loss")

    def __init__(self, generator, encoder, d1, d2, z_dim: int | None = None,
                 lambda_image: float = 10.0, lambda_latent: float = 0.5,
                 lambda_kl: float = 0.01, lambda_gan: float = 1.0, name: str = "bicycle_gan",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator, self.encoder, self.d1, self.d2 = generator, encoder, d1, d2
        self.z_dim = int(z_dim or generator.inputs[1].shape[-1])
        self.lambda_image, self.lambda_latent = float(lambda_image), float(lambda_latent)
        self.lambda_kl, self.lambda_gan = float(lambda_kl), float(lambda_gan)
        self.sampling = GaussianSampling(name="sampling")
        self._setup()

    def default_optimizer(self):
        return _adam(1e-4, 0.5)

    def call(self, inputs, training=False):
        """``G([A, z])``."""
        return self.generator(inputs, training=training)

    @staticmethod
    def _halves(data):
        a, b = data[0], data[1]
        n = tf.shape(a)[0] // 2
        return a[:n], b[:n], a[n:], b[n:]

    def _fakes(self, a_vae, b_vae, a_lr):
        mean, logvar = self.encoder(b_vae, training=True)
        z_enc = self.sampling([mean, logvar])
        fake_vae = self.generator([a_vae, z_enc], training=True)
        z_rand = tf.random.normal(tf.stack([tf.shape(a_lr)[0], self.z_dim]))
        fake_lr = self.generator([a_lr, z_rand], training=True)
        return mean, logvar, fake_vae, z_rand, fake_lr

    def discriminator_step(self, data):
        a_vae, b_vae, a_lr, b_lr = self._halves(data)
        _, _, fake_vae, _, fake_lr = self._fakes(a_vae, b_vae, a_lr)
        with tf.GradientTape(persistent=True) as tape:
            d1_loss = lsgan_d_loss(self.d1(b_vae, training=True),
                                   self.d1(fake_vae, training=True), half=False)
            d2_loss = lsgan_d_loss(self.d2(b_lr, training=True),
                                   self.d2(fake_lr, training=True), half=False)
        self._apply(tape, d1_loss, "d1")
        self._apply(tape, d2_loss, "d2")
        del tape
        return {"d1_loss": d1_loss, "d2_loss": d2_loss}

    def generator_step(self, data):
        a_vae, b_vae, a_lr, _ = self._halves(data)
        with tf.GradientTape(persistent=True) as tape:
            mean, logvar, fake_vae, z_rand, fake_lr = self._fakes(a_vae, b_vae, a_lr)
            gan_vae = lsgan_g_loss(self.d1(fake_vae, training=True))
            gan_lr = lsgan_g_loss(self.d2(fake_lr, training=True))
            l1_image = l1_loss(b_vae, fake_vae)
            kl = kl_divergence(mean, logvar, reduction="sum")
            z_back, _ = self.encoder(fake_lr, training=True)
            l1_latent = l1_loss(z_rand, z_back)
            e_loss = (self.lambda_gan * (gan_vae + gan_lr) + self.lambda_image * l1_image
                      + self.lambda_kl * kl)
            g_loss = e_loss + self.lambda_latent * l1_latent
        self._apply(tape, e_loss, "encoder")
        self._apply(tape, g_loss, "generator")
        del tape
        return {"gan_vae": gan_vae, "gan_lr": gan_lr, "l1_image": l1_image,
                "l1_latent": l1_latent, "kl": kl, "e_loss": e_loss, "g_loss": g_loss}
