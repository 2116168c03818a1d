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


# --------------------------------------------------------------------------- Chapter 9: DeepFake

def _deepfake_upsample(x, filters: int, upsampler: str, name: str, activation=True):
    """One 2x upsampling stage: nearest UpSampling2D + 3x3 conv (the book), or a 3x3 conv
    to 4*filters channels + PixelShuffle(2) (the 2017 deepfakes code)."""
    from .layers import PixelShuffle

    if upsampler == "upsampling":
        x = keras.layers.UpSampling2D(2, name=f"{name}_up")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        if activation:
            x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)
        return x
    if upsampler == "pixel_shuffle":
        x = keras.layers.Conv2D(4 * filters, 3, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)
        return PixelShuffle(2, name=f"{name}_shuffle")(x)
    raise ValueError(f"upsampler must be 'upsampling' or 'pixel_shuffle', got {upsampler!r}")


def build_deepfake_encoder(input_shape=(64, 64, 3), latent_dim: int = 1024,
                           width_divisor: int = 1, upsampler: str = "upsampling",
                           name: str = "encoder") -> keras.Model:
    """The DeepFake encoder shared by both identities (Chapter 9; the 2017 deepfakes code).

    Four stride-2 5x5 convolutions with LeakyReLU(0.1) (128..1024 filters), a linear
    Dense bottleneck of ``latent_dim``, a Dense back to 4x4x1024 and one upsampling stage
    to (8, 8, 512). Filters and ``latent_dim`` are divided by ``width_divisor``.
    With the defaults: 55,505,664 parameters (69,662,976 with ``upsampler='pixel_shuffle'``).
    """
    d = int(width_divisor)
    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = inputs
    for k, f in enumerate((128, 256, 512, 1024), start=1):
        x = keras.Sequential([keras.layers.Conv2D(f // d, 5, strides=2, padding="same"),
                              keras.layers.LeakyReLU(negative_slope=0.1)],
                             name=f"Downsample_{k}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(latent_dim // d, name="latent")(x)
    x = keras.layers.Dense(4 * 4 * 1024 // d)(x)
    x = keras.layers.Reshape((4, 4, 1024 // d))(x)
    # The book ends with a linear 3x3 conv after upsampling; the deepfakes code's
    # pixel-shuffle stage keeps its LeakyReLU.
    x = _deepfake_upsample(x, 512 // d, upsampler, "Upsample_enc", activation=False)
    return keras.Model(inputs, x, name=name)


def build_deepfake_decoder(input_shape=(8, 8, 512), width_divisor: int = 1,
                           upsampler: str = "upsampling", name: str = "decoder") -> keras.Model:
    """A DeepFake decoder (one per identity): three upsampling stages (256, 128, 64
    filters, LeakyReLU 0.1) from (8, 8, 512) to (64, 64, 64), then a 5x5 sigmoid conv to a
    (64, 64, 3) face in [0, 1]. With the defaults: 1,553,539 parameters (6,199,747 with
    ``upsampler='pixel_shuffle'``). ``input_shape`` channels are divided by ``width_divisor``.
    """
    d = int(width_divisor)
    h, w, c = input_shape
    inputs = keras.Input(shape=(h, w, c // d), name="input_layer")
    x = inputs
    for k, f in enumerate((256, 128, 64), start=1):
        x = _deepfake_upsample(x, f // d, upsampler, f"Upsample_{k}")
    outputs = keras.layers.Conv2D(3, 5, padding="same", activation="sigmoid", name="to_rgb")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="common")
class DeepFake(keras.Model):
    """Shared encoder + two decoders (the original DeepFake autoencoder, 2017).

    Autoencoder A = decoder_a(encoder(.)) learns identity A's faces, autoencoder B
    learns B's; the encoder is shared, so it must describe pose and expression in a way
    both decoders understand. ``swap(x)`` = decoder_b(encoder(x)): B's face with A's pose.
    ``train_step`` takes ``((warped_a, target_a), (warped_b, target_b))`` and does the A
    update, then the B update, each with its own optimizer (Keras 3 optimizers are bound
    to the variables they were built with). Metrics: ``loss_a``, ``loss_b`` (MAE).
    """

    def __init__(self, encoder, decoder_a, decoder_b, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder_a, self.decoder_b = encoder, decoder_a, decoder_b
        self.loss_a_tracker = keras.metrics.Mean(name="loss_a")
        self.loss_b_tracker = keras.metrics.Mean(name="loss_b")
        self.built = True  # the three functional sub-models are built already

    @classmethod
    def build_default(cls, width_divisor: int = 1, upsampler: str = "upsampling",
                      latent_dim: int = 1024, **kwargs):
        """Encoder and two decoders from :func:`build_deepfake_encoder` / ``_decoder``."""
        enc = build_deepfake_encoder(latent_dim=latent_dim, width_divisor=width_divisor,
                                     upsampler=upsampler)
        dec_a = build_deepfake_decoder(width_divisor=width_divisor, upsampler=upsampler,
                                       name="decoder_a")
        dec_b = build_deepfake_decoder(width_divisor=width_divisor, upsampler=upsampler,
                                       name="decoder_b")
        return cls(enc, dec_a, dec_b, **kwargs)

    @property
    def variables_a(self):
        return self.encoder.trainable_variables + self.decoder_a.trainable_variables

    @property
    def variables_b(self):
        return self.encoder.trainable_variables + self.decoder_b.trainable_variables

    def compile(self, optimizer_a=None, optimizer_b=None, **kwargs):
        """Two Adam optimizers by default (lr 5e-5, beta_1 0.5, as the book)."""
        super().compile(**kwargs)
        self.optimizer_a = optimizer_a or keras.optimizers.Adam(5e-5, beta_1=0.5, beta_2=0.999)
        self.optimizer_b = optimizer_b or keras.optimizers.Adam(5e-5, beta_1=0.5, beta_2=0.999)
        self.optimizer_a.build(self.variables_a)
        self.optimizer_b.build(self.variables_b)

    @property
    def metrics(self):
        return [self.loss_a_tracker, self.loss_b_tracker]

    def call(self, inputs, training=False):
        return self.decoder_a(self.encoder(inputs, training=training), training=training)

    def reconstruct_b(self, inputs, training=False):
        return self.decoder_b(self.encoder(inputs, training=training), training=training)

    def swap(self, inputs):
        """B's face with the pose and expression of the A faces in ``inputs``."""
        return self.decoder_b(self.encoder(inputs, training=False), training=False)

    def _step(self, warped, target, decoder, optimizer, variables):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            pred = decoder(self.encoder(warped, training=True), training=True)
            loss = keras.ops.mean(keras.ops.abs(keras.ops.cast(target, pred.dtype) - pred))
            # under a tf.distribute strategy the replicas' gradients are summed: scale the
            # per-replica mean so that the update uses the mean over the global batch
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return loss

    def train_step(self, data):
        # fit() on a dataset of ((wa, ta), (wb, tb)) sees it as (x, y); train_on_batch
        # passes (x, None, None): accept both.
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        (warped_a, target_a), (warped_b, target_b) = x if y is None else (x, y)
        loss_a = self._step(warped_a, target_a, self.decoder_a, self.optimizer_a, self.variables_a)
        loss_b = self._step(warped_b, target_b, self.decoder_b, self.optimizer_b, self.variables_b)
        self.loss_a_tracker.update_state(loss_a)
        self.loss_b_tracker.update_state(loss_b)
        return {"loss_a": self.loss_a_tracker.result(), "loss_b": self.loss_b_tracker.result()}


__all__ += ["build_deepfake_encoder", "build_deepfake_decoder", "DeepFake"]


# --------------------------------------------------------------------------- Chapter 2: autoencoders and VAEs

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
    from .layers import GaussianSampling

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
    from .layers import DownConvBlock, GaussianSampling

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
    from .layers import UpConvBlock

    s = _face_grid(image_size)
    inputs = keras.Input(shape=(z_dim,), name="z")
    x = keras.layers.Dense(s * s * 64, activation="relu")(inputs)
    x = keras.layers.Reshape((s, s, 64))(x)
    for i, filters in enumerate((64, 64, 32, 32), start=1):
        x = UpConvBlock(filters, name=f"up{i}")(x)
    outputs = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="image")(x)
    return keras.Model(inputs, outputs, name=name)


__all__ += ["build_dense_encoder", "build_mnist_encoder", "build_mnist_decoder",
            "build_autoencoder", "build_face_encoder", "build_face_decoder"]
