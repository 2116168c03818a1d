"""Chapter 8: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import tensorflow as tf
from keras import layers, ops
from common.ch06 import hinge_d_loss, hinge_g_loss


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


@keras.saving.register_keras_serializable(package="common")
class OrthogonalRegularizer(keras.regularizers.Regularizer):
    """BigGAN's orthogonal regularisation (Brock et al. 2019, arXiv 1809.11096, sec. 3.1):
    ``beta * ||W^T W * (1 - I)||_F^2 = beta * sum_{i != j} (w_i . w_j)^2``.

    The kernel is reshaped to (-1, C_out), so w_i are the filters. Only the off-diagonal
    products are penalised: filters are pushed towards being mutually orthogonal while their
    norms stay free. ``squared=False`` returns ``beta * ||.||_F`` (what the book's code
    computes, although its formula is squared).
    """

    def __init__(self, beta: float = 1e-4, squared: bool = True):
        self.beta, self.squared = float(beta), bool(squared)

    def __call__(self, w):
        mat = ops.reshape(ops.cast(w, "float32"), (-1, ops.shape(w)[-1]))
        gram = ops.matmul(ops.transpose(mat), mat)
        off = gram * (1.0 - ops.eye(ops.shape(gram)[0], dtype=gram.dtype))
        total = ops.sum(ops.square(off))
        return self.beta * (total if self.squared else ops.sqrt(total + 1e-12))

    def get_config(self):
        return {"beta": self.beta, "squared": self.squared}


def _lrelu(x):
    return ops.leaky_relu(x, negative_slope=0.2)


class _ConvFactory:
    """Makes (optionally spectrally normalised) Conv2D/Dense layers with one initializer and
    regularizer."""

    def __init__(self, spectral=True, initializer="glorot_uniform", regularizer=None):
        self.spectral, self.initializer, self.regularizer = spectral, initializer, regularizer

    def conv(self, filters, kernel_size, name):
        return spectral_norm(layers.Conv2D(filters, kernel_size, padding="same", name=name,
                                           kernel_initializer=self.initializer,
                                           kernel_regularizer=self.regularizer), self.spectral)

    def dense(self, units, name):
        return spectral_norm(layers.Dense(units, name=name, kernel_initializer=self.initializer,
                                          kernel_regularizer=self.regularizer), self.spectral)

    def cbn(self, num_classes, name):
        return ConditionalBatchNorm(num_classes, spectral=self.spectral,
                                    kernel_initializer=self.initializer,
                                    kernel_regularizer=self.regularizer, name=name)


class ResBlockUp(keras.layers.Layer):
    """Generator residual block (its input is already upsampled, as in the book):
    main = conv3x3 -> CBN -> LReLU -> conv3x3 -> CBN -> LReLU; shortcut = identity when the
    width is unchanged, else conv1x1 -> CBN -> LReLU; output = shortcut + main.
    ``call([x, cond])``: cond is the labels (table CBN, SAGAN) or a vector (dense CBN, BigGAN)."""

    def __init__(self, filters, num_classes=None, factory=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.num_classes = int(filters), num_classes
        self.factory = factory or _ConvFactory()

    def build(self, input_shape):
        x_shape, cond_shape = input_shape
        f, fac = self.factory, self.filters
        self.conv1, self.conv2 = f.conv(fac, 3, "conv1"), f.conv(fac, 3, "conv2")
        self.cbn1 = f.cbn(self.num_classes, "cbn1")
        self.cbn2 = f.cbn(self.num_classes, "cbn2")
        out_shape = (*x_shape[:-1], fac)
        self.conv1.build(x_shape)
        self.conv2.build(out_shape)
        self.cbn1.build((out_shape, cond_shape))
        self.cbn2.build((out_shape, cond_shape))
        self.learned_shortcut = int(x_shape[-1]) != fac
        if self.learned_shortcut:
            self.conv_sc, self.cbn_sc = f.conv(fac, 1, "conv_shortcut"), f.cbn(self.num_classes,
                                                                                 "cbn_shortcut")
            self.conv_sc.build(x_shape)
            self.cbn_sc.build((out_shape, cond_shape))

    def call(self, inputs, training=None):
        x, cond = inputs
        h = _lrelu(self.cbn1([self.conv1(x, training=training), cond], training=training))
        h = _lrelu(self.cbn2([self.conv2(h, training=training), cond], training=training))
        if self.learned_shortcut:
            x = _lrelu(self.cbn_sc([self.conv_sc(x, training=training), cond], training=training))
        return x + h

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.filters)


class ResBlockDown(keras.layers.Layer):
    """Discriminator residual block, no normalisation: main = conv3x3 -> LReLU -> conv3x3 ->
    LReLU -> avgpool2 (if ``downsample``); shortcut = conv1x1 -> LReLU -> avgpool when the
    width changes or the block downsamples (the book only on a width change, which breaks
    shapes for equal widths with pooling), identity otherwise."""

    def __init__(self, filters, downsample=True, factory=None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.downsample = int(filters), bool(downsample)
        self.factory = factory or _ConvFactory()

    def build(self, input_shape):
        f = self.factory
        self.conv1, self.conv2 = f.conv(self.filters, 3, "conv1"), f.conv(self.filters, 3, "conv2")
        self.conv1.build(input_shape)
        self.conv2.build((*input_shape[:-1], self.filters))
        self.learned_shortcut = int(input_shape[-1]) != self.filters or self.downsample
        if self.learned_shortcut:
            self.conv_sc = f.conv(self.filters, 1, "conv_shortcut")
            self.conv_sc.build(input_shape)

    def _pool(self, x):
        return ops.average_pool(x, 2, strides=2, padding="valid") if self.downsample else x

    def call(self, x, training=None):
        h = _lrelu(self.conv1(x, training=training))
        h = self._pool(_lrelu(self.conv2(h, training=training)))
        if self.learned_shortcut:
            x = self._pool(_lrelu(self.conv_sc(x, training=training)))
        return x + h

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.downsample:
            h, w = (None if h is None else h // 2), (None if w is None else w // 2)
        return (b, h, w, self.filters)


class SAGANGenerator(keras.Model):
    """SAGAN generator for 32x32 images: Dense(4*4*4*dim) -> (4, 4, 4*dim) -> [Up ->
    ResBlockUp] x 3 (widths 4, 2, 1 x dim) with self-attention after the 16x16 block ->
    Conv 3x3 to RGB -> tanh. ``call([z, labels])``; ``return_attention=True`` also returns
    the attention map (B, 256, 64)."""

    def __init__(self, z_dim=128, num_classes=10, dim=64, spectral=True,
                 name="sagan_generator", factory=None, cbn_classes="labels", **kwargs):
        super().__init__(name=name, **kwargs)
        self.z_dim, self.num_classes, self.dim = int(z_dim), int(num_classes), int(dim)
        f = factory or _ConvFactory(spectral)
        cbn_classes = self.num_classes if cbn_classes == "labels" else cbn_classes
        self.dense = f.dense(4 * 4 * 4 * self.dim, "dense")
        widths = (4 * self.dim, 2 * self.dim, self.dim)
        self.res_blocks = [ResBlockUp(w, cbn_classes, f, name=f"block_up_{i}")
                           for i, w in enumerate(widths)]
        self.attention = SelfAttention(spectral=spectral, kernel_initializer=f.initializer,
                                       kernel_regularizer=f.regularizer, name="attention")
        self.to_rgb = f.conv(3, 3, "to_rgb")
        self.upsample = layers.UpSampling2D(2)

    def _conditions(self, z, labels):
        """(input of the dense layer, one condition per residual block)."""
        return z, [labels] * 3

    def call(self, inputs, training=False, return_attention=False):
        z, labels = inputs
        first, conds = self._conditions(z, labels)
        return self._forward(first, conds, training, return_attention)

    def _forward(self, first, conds, training=False, return_attention=False):
        x = ops.reshape(self.dense(first, training=training), (-1, 4, 4, 4 * self.dim))
        attention = None
        for i, block in enumerate(self.res_blocks):
            x = block([self.upsample(x), conds[i]], training=training)
            if i == 1:
                x, attention = self.attention(x, training=training, return_attention=True)
        images = ops.tanh(self.to_rgb(x, training=training))
        return (images, attention) if return_attention else images


class BigGANGenerator(SAGANGenerator):
    """BigGAN generator (SAGAN's layout) with skip-z and a shared class embedding: z is split
    into ``z_chunks`` chunks; chunk 0 feeds the dense layer, chunk k the k-th residual
    block, whose conditional BNs get ``embed(label) ++ chunk_k`` through dense layers.
    Orthogonal initialisation everywhere, orthogonal regularisation (``ortho_beta``) on every
    kernel of G (collected in ``G.losses``), not on the embedding."""

    def __init__(self, z_dim=128, num_classes=10, dim=64, y_dim=32, z_chunks=4,
                 ortho_beta=1e-4, spectral=True, name="biggan_generator", **kwargs):
        if z_dim % z_chunks:
            raise ValueError("z_dim must be divisible by z_chunks")
        reg = OrthogonalRegularizer(ortho_beta) if ortho_beta else None
        factory = _ConvFactory(spectral, keras.initializers.Orthogonal(), reg)
        super().__init__(z_dim, num_classes, dim, spectral, name=name, factory=factory,
                         cbn_classes=None, **kwargs)  # None: dense-mode conditional BN
        self.y_dim, self.z_chunks, self.ortho_beta = int(y_dim), int(z_chunks), ortho_beta
        self.embedding = layers.Embedding(self.num_classes, self.y_dim, name="shared_embedding")

    def _conditions(self, z, labels, embedding=None):
        chunks = ops.split(z, self.z_chunks, axis=-1)
        e = embedding if embedding is not None else self.embedding(
            ops.reshape(ops.cast(labels, "int32"), (-1,)))
        return chunks[0], [ops.concatenate([e, c], axis=-1) for c in chunks[1:]]

    def from_embedding(self, z, embedding, training=False):
        """Images from z and class embeddings given directly (B, y_dim): with the shared
        embedding one can blend two classes, ``(1 - t) * e_a + t * e_b``."""
        z = ops.convert_to_tensor(z, "float32")
        first, conds = self._conditions(z, None, ops.convert_to_tensor(embedding, "float32"))
        return self._forward(first, conds, training)


class SAGANDiscriminator(keras.Model):
    """Projection discriminator (Miyato & Koyama 2018) for 32x32 images: ResBlockDown widths
    dim, 2*dim, 4*dim (pooling) and 4*dim (no pooling), self-attention after block
    ``attention_after``, sum over (H, W) -> h; ``D(x, y) = Dense(1)(h) + <embed(y), h>``.
    ``call([images, labels])``. The embedding is not spectrally normalised (Keras 3.15's
    wrapper breaks on Embedding)."""

    def __init__(self, num_classes=10, dim=64, attention_after=1, spectral=True,
                 orthogonal_init=False, name="sagan_discriminator", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.attention_after = int(attention_after)
        init = keras.initializers.Orthogonal() if orthogonal_init else "glorot_uniform"
        f = _ConvFactory(spectral, init)
        widths = (self.dim, 2 * self.dim, 4 * self.dim, 4 * self.dim)
        self.res_blocks = [ResBlockDown(w, downsample=i < 3, factory=f, name=f"block_down_{i}")
                           for i, w in enumerate(widths)]
        self.attention = SelfAttention(spectral=spectral, kernel_initializer=init,
                                       name="attention")
        self.embedding = layers.Embedding(self.num_classes, 4 * self.dim, name="embedding")
        self.dense = f.dense(1, "dense")

    def call(self, inputs, training=False, return_attention=False):
        x, labels = inputs
        attention = None
        for i, block in enumerate(self.res_blocks):
            x = block(x, training=training)
            if i + 1 == self.attention_after:
                x, attention = self.attention(x, training=training, return_attention=True)
        h = ops.sum(x, axis=(1, 2))
        e = self.embedding(ops.reshape(ops.cast(labels, "int32"), (-1,)))
        out = self.dense(h, training=training) + ops.sum(e * h, axis=-1, keepdims=True)
        return (out, attention) if return_attention else out


def _built(model, z_dim=None, image_size=32):
    labels = np.zeros((2,), "int32")
    if z_dim is not None:
        model([np.zeros((2, z_dim), "float32"), labels])
    else:
        model([np.zeros((2, image_size, image_size, 3), "float32"), labels])
    return model


def build_sagan_generator(z_dim=128, num_classes=10, dim=64, spectral=True):
    """A built :class:`SAGANGenerator` (2,349,412 parameters at the defaults without SN)."""
    return _built(SAGANGenerator(z_dim, num_classes, dim, spectral), z_dim)


def build_biggan_generator(z_dim=128, num_classes=10, dim=64, y_dim=32, z_chunks=4,
                           ortho_beta=1e-4, spectral=True):
    """A built :class:`BigGANGenerator` (2,076,196 parameters at the defaults without SN)."""
    return _built(BigGANGenerator(z_dim, num_classes, dim, y_dim, z_chunks, ortho_beta,
                                  spectral), z_dim)


def build_sagan_discriminator(num_classes=10, dim=64, attention_after=1, spectral=True,
                              orthogonal_init=False):
    """A built :class:`SAGANDiscriminator` (2,375,218 trainable parameters at the defaults)."""
    return _built(SAGANDiscriminator(num_classes, dim, attention_after, spectral,
                                     orthogonal_init))


class ConditionalHingeGAN(keras.Model):
    """Trains a class-conditional G and D with the hinge loss and ``fit`` on
    ``(images, labels)`` batches. One step: one D update on real images and on G's images of
    the **same** labels with fresh z, then one G update on fresh z. G's regularisation losses
    (``G.losses``: BigGAN's orthogonal term) are added to the G loss and logged as
    ``ortho``. Both networks are called with ``training=True`` (spectral norm and
    conditional BN depend on it). Losses are divided by the number of replicas."""

    def __init__(self, generator, discriminator, z_dim=None, name="conditional_hinge_gan",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.z_dim = int(z_dim or generator.z_dim)
        self.trackers = {n: keras.metrics.Mean(name=n) for n in
                         ("d_loss", "g_loss", "ortho", "d_real", "d_fake", "gamma_g", "gamma_d")}

    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        """Adam with the book's TTUR defaults: G 1e-4, D 4e-4, beta_1 0, beta_2 0.9."""
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(4e-4, beta_1=0.0, beta_2=0.9)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    @property
    def _replicas(self):
        return float(self.distribute_strategy.num_replicas_in_sync)

    def sample_noise(self, n):
        return tf.random.normal(tf.stack([n, self.z_dim]))

    def discriminator_step(self, real, labels, z):
        """One D update on real images and G's images of the same labels."""
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            fake = self.generator([z, labels], training=True)
            real_out = self.discriminator([real, labels], training=True)
            fake_out = self.discriminator([fake, labels], training=True)
            d_loss = hinge_d_loss(real_out, fake_out)
            scaled = d_loss / self._replicas
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))
        return dict(d_loss=d_loss, d_real=tf.reduce_mean(real_out),
                    d_fake=tf.reduce_mean(fake_out))

    def generator_step(self, labels, z):
        """One G update: hinge G loss plus G's regularisation losses."""
        g_vars = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            fake = self.generator([z, labels], training=True)
            g_adv = hinge_g_loss(self.discriminator([fake, labels], training=True))
            ortho = tf.add_n([tf.constant(0.0)] + [tf.cast(l, tf.float32)
                                                    for l in self.generator.losses])
            scaled = (g_adv + ortho) / self._replicas
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))
        return dict(g_loss=g_adv, ortho=ortho)

    def train_step(self, data):
        real, labels = data[0], data[1]
        batch = tf.shape(real)[0]
        values = self.discriminator_step(real, labels, self.sample_noise(batch))
        values.update(self.generator_step(labels, self.sample_noise(batch)))
        values.update(gamma_g=self.generator.attention.gamma[0],
                      gamma_d=self.discriminator.attention.gamma[0])
        for key, value in values.items():
            self.trackers[key].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def truncated_z(shape, threshold: float = 1.0, seed: int | None = None):
    """Samples of N(0, 1) truncated to [-threshold, threshold] (BigGAN's truncation trick),
    drawn exactly by the inverse CDF: ``z = Phi^-1(U(Phi(-t), Phi(t)))``. Float32 tensor."""
    t = float(threshold)
    low = 0.5 * (1.0 + tf.math.erf(-t / np.sqrt(2.0)))
    high = 1.0 - low
    if seed is None:
        u = tf.random.uniform(shape, dtype=tf.float64)
    else:
        u = tf.random.stateless_uniform(shape, seed=(int(seed), 0), dtype=tf.float64)
    z = tf.math.ndtri(tf.cast(low, tf.float64) + u * tf.cast(high - low, tf.float64))
    return tf.cast(tf.clip_by_value(z, -t, t), tf.float32)
