"""Chapter 5: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import os
from pathlib import Path
import tensorflow as tf
from common import config


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


#: Layers of the book's neural style transfer: content from one deep layer, style from the
#: first convolution of each of VGG19's five blocks.
CONTENT_LAYERS = ("block5_conv1",)


STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


#: Encoder outputs of AdaIN: style statistics from all four, content from the last one.
ADAIN_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")


#: ImageNet channel means that Keras' VGG preprocessing subtracts, in B, G, R order.
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


_VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


class PretrainedWeightsUnavailableError(RuntimeError):
    """A full run could not download the ImageNet weights of VGG19; the message says what to do."""


def _resolve_weights(weights):
    if weights == "auto":
        return None if config.is_smoke() else "imagenet"
    return weights


def build_vgg19(weights="auto") -> keras.Model:
    """VGG19 without its classifier head (16 conv layers in 5 blocks, 20,024,384 parameters),
    frozen, taking images of any size. ``weights='auto'``: ImageNet in a full run, random
    (``None``) in smoke mode. A full run that cannot download the weights raises
    :class:`PretrainedWeightsUnavailableError`. Simonyan & Zisserman 2015."""
    weights = _resolve_weights(weights)
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as err:  # network, proxy or a truncated download
        if weights != "imagenet":
            raise
        cache = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"
        raise PretrainedWeightsUnavailableError(
            f"Could not download the ImageNet weights of VGG19 ({type(err).__name__}): connect to "
            f"the internet once so that Keras caches {_VGG19_NOTOP_FILE} in {cache}, or copy the "
            f"file there by hand."
        ) from err
    vgg.trainable = False
    return vgg


def vgg_feature_extractor(layer_names=STYLE_LAYERS, weights="auto", vgg=None,
                          name: str = "vgg_features") -> keras.Model:
    """A frozen model mapping a VGG-preprocessed batch to the list of outputs of
    ``layer_names`` (in that order). Reuses ``vgg`` when given."""
    vgg = vgg if vgg is not None else build_vgg19(weights)
    outputs = [vgg.get_layer(n).output for n in layer_names]
    model = keras.Model(vgg.input, outputs, name=name)
    model.trainable = False
    return model


def vgg_preprocess(images):
    """RGB in [0, 1] -> what Keras' ImageNet VGG expects: BGR in [0, 255] minus the ImageNet
    channel means (``keras.applications.vgg19.preprocess_input`` in 'caffe' mode).

    That Keras function flips RGB to BGR itself; the book reverses the channels *before*
    calling it, so its images reach VGG in RGB order with the means subtracted from the
    wrong channels. Here the flip happens exactly once.
    """
    images = ops.convert_to_tensor(images)
    bgr = ops.flip(images * 255.0, axis=-1)
    return bgr - ops.convert_to_tensor(np.array(VGG_MEAN_BGR, np.float32), dtype=bgr.dtype)


def gram_matrix(features):
    """Gram matrix of a batch of feature maps: ``G[b, c, d] = sum_{h,w} F[b,h,w,c] F[b,h,w,d] / (H W)``.

    ``(B, H, W, C)`` -> ``(B, C, C)``, symmetric: the correlation between every pair of filter
    responses, averaged over positions, so it keeps which features occur together (texture,
    colour, strokes) and forgets where they occur (Gatys et al. 2015)."""
    features = ops.convert_to_tensor(features)
    shape = ops.shape(features)
    points = ops.cast(shape[1] * shape[2], features.dtype)
    return ops.einsum("bhwc,bhwd->bcd", features, features) / points


def _sum_per_sample(x):
    return ops.sum(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


def content_loss(target_features, output_features):
    """Mean over layers of the sum of squared differences between feature maps (summed over
    H, W, C; averaged over the batch). The book's content and reconstruction loss."""
    losses = [ops.mean(_sum_per_sample(ops.square(ops.stop_gradient(t) - o)))
              for t, o in zip(target_features, output_features)]
    return ops.mean(ops.stack(losses))


def style_loss_gram(style_features, output_features):
    """Mean over layers of the summed squared difference of the Gram matrices of the style
    image's and the output's features (sum, not mean, over the C x C entries, as in the book:
    deeper layers with more channels then weigh more, favouring large strokes over noise-like
    texture). A style batch of one is broadcast over the outputs."""
    losses = []
    for s, o in zip(style_features, output_features):
        diff = ops.stop_gradient(gram_matrix(s)) - gram_matrix(o)
        losses.append(ops.mean(_sum_per_sample(ops.square(diff))))
    return ops.mean(ops.stack(losses))


def style_loss_moments(style_features, output_features, epsilon: float = 1e-5):
    """AdaIN style loss: per layer, ``||mean(out) - mean(style)||^2 + ||std(out) - std(style)||^2``
    over channels, averaged over the batch and then over layers (each layer weighs the same).
    Statistics per sample and channel over (H, W), ``std = sqrt(var + epsilon)``."""
    losses = []
    for s, o in zip(style_features, output_features):
        s_mean, s_std = channel_moments(ops.stop_gradient(s), epsilon)
        o_mean, o_std = channel_moments(o, epsilon)
        per_sample = _sum_per_sample(ops.square(s_mean - o_mean)) + _sum_per_sample(ops.square(s_std - o_std))
        losses.append(ops.mean(per_sample))
    return ops.mean(ops.stack(losses))


def total_variation_loss(images):
    """Sum of absolute differences between vertically and horizontally neighbouring pixels
    (the L1 total variation), averaged over the batch: 0 for a constant image, large for
    high-frequency noise. A smoothness regulariser for generated images."""
    images = ops.convert_to_tensor(images)
    dy = ops.abs(images[:, 1:, :, :] - images[:, :-1, :, :])
    dx = ops.abs(images[:, :, 1:, :] - images[:, :, :-1, :])
    return ops.mean(_sum_per_sample(dy) + _sum_per_sample(dx))


class NeuralStyleTransfer:
    """Gatys-style transfer: optimise the pixels of an image so that its VGG19 content
    features match a content image and its Gram matrices match a style image.

    ``loss = content_weight * content_loss + style_weight * style_loss_gram + tv_weight * TV``.
    Gradients are applied to the image (a ``tf.Variable``), never to VGG, and the image is
    clipped to [0, 1] after every step. With ``style_weight=0`` and ``init='noise'`` it
    reconstructs an image from content features alone (and with ``content_weight=0`` from
    style features alone), which shows what a layer keeps.
    """

    def __init__(self, content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS, weights="auto",
                 content_weight: float = 1.0, style_weight: float = 1e-3, tv_weight: float = 0.0,
                 learning_rate: float = 0.01, vgg=None):
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        self.extractor = vgg_feature_extractor(self.content_layers + self.style_layers, weights,
                                               vgg=vgg, name="nst_features")
        self.content_weight, self.style_weight = float(content_weight), float(style_weight)
        self.tv_weight, self.learning_rate = float(tv_weight), float(learning_rate)

    def features(self, images):
        """``(content_features, style_features)`` lists of an RGB [0, 1] batch."""
        outputs = self.extractor(vgg_preprocess(images))
        if not isinstance(outputs, (list, tuple)):  # a one-layer model returns a bare tensor
            outputs = [outputs]
        n = len(self.content_layers)
        return list(outputs[:n]), list(outputs[n:])

    def losses(self, image, content_ref, style_ref):
        content, style = self.features(image)
        c = content_loss(content_ref, content) if self.content_weight else ops.zeros(())
        s = style_loss_gram(style_ref, style) if self.style_weight else ops.zeros(())
        tv = total_variation_loss(image) if self.tv_weight else ops.zeros(())
        total = self.content_weight * c + self.style_weight * s + self.tv_weight * tv
        return total, {"loss": total, "content": c, "style": s, "tv": tv}

    def stylize(self, content_image, style_image=None, steps: int = 1000, init: str = "content",
                seed: int = 0, record_every: int = 0):
        """Run ``steps`` Adam steps and return ``(image, history)``: the image ``(H, W, 3)`` in
        [0, 1] and a dict of loss lists (plus ``'frames'`` every ``record_every`` steps).
        ``init``: start from the content image (fast, the book's choice) or from noise."""
        content_image = _as_batch(content_image)
        style_image = content_image if style_image is None else _as_batch(style_image)
        content_ref, _ = self.features(content_image)
        _, style_ref = self.features(style_image)
        if init == "content":
            start = content_image
        elif init == "noise":
            start = tf.random.stateless_uniform(tf.shape(content_image), seed=(seed, 0))
        else:
            raise ValueError(f"init must be 'content' or 'noise', got {init!r}")
        image = tf.Variable(start, dtype=tf.float32, name="image")
        optimizer = keras.optimizers.Adam(self.learning_rate)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                total, logs = self.losses(image, content_ref, style_ref)
            grad = tape.gradient(total, image)
            optimizer.apply_gradients([(grad, image)])
            image.assign(tf.clip_by_value(image, 0.0, 1.0))
            return logs

        history = {"loss": [], "content": [], "style": [], "tv": [], "frames": []}
        for i in range(1, int(steps) + 1):
            logs = step()
            for key, value in logs.items():
                history[key].append(float(value))
            if record_every and i % record_every == 0:
                history["frames"].append(image.numpy()[0])
        return image.numpy()[0], history


def _as_batch(image):
    image = np.asarray(image, dtype=np.float32)
    return image[None] if image.ndim == 3 else image


def build_adain_decoder(width_divisor: int = 1, channels: int = 512, name: str = "decoder") -> keras.Model:
    """The AdaIN decoder of the book: it mirrors VGG19 up to ``block4_conv1`` with reflection-
    padded 3x3 convolutions (ReLU except the last) and three nearest x2 up-samplings,
    ``(H/8, W/8, 512) -> (H, W, 3)``. Filters 256, [up] 256, 256, 256, 128, [up] 128, 64, [up]
    64, 3, each divided by ``width_divisor`` (smoke mode shrinks it). With the default the
    book's layer list gives 3,505,219 parameters. Outputs are on VGG's [0, 255] pixel scale."""
    d = int(width_divisor)
    plan = [256, "up", 256, 256, 256, 128, "up", 128, 64, "up", 64]
    features = keras.Input((None, None, channels), name="adain_features")
    x = features
    for i, item in enumerate(plan):
        if item == "up":
            x = keras.layers.UpSampling2D(2, name=f"up_{i}")(x)
        else:
            x = ReflectionConv2D(max(item // d, 1), 3, activation="relu", name=f"conv_{i}")(x)
    rgb = ReflectionConv2D(3, 3, name="to_rgb")(x)
    return keras.Model(features, rgb, name=name)


class AdaINStyleTransfer(keras.Model):
    """Style transfer network of Huang & Belongie 2017: a frozen VGG19 encoder (up to
    ``block4_conv1``), an :class:`~common.layers.AdaIN` layer and a trained decoder.

    ``model([content, style], alpha=1.0)`` stylises a batch of RGB [0, 1] content images with
    the matching style images in one forward pass; ``alpha`` blends the AdaIN features with the
    content's own features (0 = reconstruct the content, 1 = full style). Training
    (``fit`` on ``(content, style)`` batches) updates only the decoder with
    ``content_loss(phi4(g(t)), t) + style_weight * style_loss_moments(phi(style), phi(g(t)))``
    where ``t`` is the AdaIN output: the content target is ``t`` itself, not the content
    image's features, which the paper found to converge faster. ``style_weight`` 1e-4 with the
    book's summed losses.
    """

    def __init__(self, encoder=None, decoder=None, *, weights="auto", width_divisor: int = 1,
                 style_weight: float = 1e-4, epsilon: float = 1e-5, name: str = "adain_stn", **kwargs):
        super().__init__(name=name, **kwargs)
        self.encoder = encoder if encoder is not None else vgg_feature_extractor(
            ADAIN_LAYERS, weights, name="encoder")
        self.encoder.trainable = False
        self.decoder = decoder if decoder is not None else build_adain_decoder(width_divisor)
        self.adain = AdaIN(epsilon, name="adain")
        self.style_weight, self.epsilon = float(style_weight), float(epsilon)
        self.trackers = {n: keras.metrics.Mean(name=n) for n in ("loss", "content_loss", "style_loss")}

    def compile(self, optimizer=None, style_weight=None, **kwargs):
        """Adam(1e-4) by default (the paper's learning rate); only the decoder is trained."""
        optimizer = optimizer or keras.optimizers.Adam(1e-4)
        super().compile(optimizer=optimizer, **kwargs)
        if style_weight is not None:
            self.style_weight = float(style_weight)
        self.optimizer.build(self.decoder.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        self.built = True

    def encode(self, images):
        """Encoder features (four maps) of RGB [0, 1] images."""
        return list(self.encoder(vgg_preprocess(images)))

    def mix(self, content_features, style_features, alpha=1.0):
        """``alpha * AdaIN(fc, fs) + (1 - alpha) * fc`` on the ``block4_conv1`` features."""
        target = self.adain([content_features, style_features])
        return alpha * target + (1.0 - alpha) * content_features

    def decode(self, features):
        """Decoder output as RGB [0, 1] (the [0, 255] output clipped and rescaled)."""
        return ops.clip(self.decoder(features), 0.0, 255.0) / 255.0

    def call(self, inputs, alpha=1.0, training=False):
        content, style = inputs
        fc = self.encode(content)[-1]
        fs = self.encode(style)[-1]
        return self.decode(self.mix(fc, fs, alpha))

    def compute_losses(self, content, style):
        fc = self.encode(content)[-1]
        style_features = self.encode(style)
        target = self.adain([fc, style_features[-1]])
        # No clipping while training: the clip would cut the gradient of every pixel outside
        # [0, 255] (most of them at the start); the decoder learns the range anyway.
        generated = self.decoder(target, training=True) / 255.0
        out_features = self.encode(generated)
        c_loss = content_loss([target], [out_features[-1]])
        s_loss = style_loss_moments(style_features, out_features, self.epsilon)
        return c_loss + self.style_weight * s_loss, c_loss, s_loss

    def train_step(self, data):
        content, style = data[0], data[1]
        replicas = float(self.distribute_strategy.num_replicas_in_sync)
        with tf.GradientTape() as tape:
            loss, c_loss, s_loss = self.compute_losses(content, style)
            scaled = loss / replicas
        variables = self.decoder.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        for key, value in (("loss", loss), ("content_loss", c_loss), ("style_loss", s_loss)):
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}
