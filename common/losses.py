"""Loss functions of the generative models, each checked against its definition in tests/.

GAN losses (Goodfellow et al. 2014, "Generative Adversarial Nets"), Wasserstein losses
(Arjovsky et al. 2017, "Wasserstein GAN"), the gradient penalty (Gulrajani et al. 2017,
"Improved Training of Wasserstein GANs") and the closed-form KL divergence of a diagonal
Gaussian from N(0, I) used by the VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

Every loss returns the mean over the samples it is given (a per-replica mean under a
``tf.distribute`` strategy); :class:`common.training.GAN` rescales by the number of replicas
before taking gradients, so the summed gradients equal those of the global-batch mean.
"""

from __future__ import annotations

import tensorflow as tf
import keras
from keras import ops

__all__ = [
    "kl_divergence",
    "discriminator_loss_bce",
    "generator_loss_bce",
    "wasserstein_loss",
    "critic_loss_wasserstein",
    "generator_loss_wasserstein",
    "gradient_penalty",
]


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


# ============================================================================================
# Chapters 5-6: hinge adversarial losses, feature matching and perceptual (VGG) losses
# ============================================================================================

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


__all__ += ["hinge_d_loss", "hinge_g_loss", "feature_matching_loss", "VGG_LOSS_WEIGHTS",
            "perceptual_loss"]


# ============================================================================================
# Chapters 7-8: ProGAN's drift penalty and BigGAN's orthogonal regularisation
# ============================================================================================

def drift_penalty(real_out, fake_out, weight: float = 1e-3):
    """ProGAN's drift term ``weight * mean(D^2)`` over the real and fake scores together
    (as the book does; the paper, Karras et al. 2018, uses the real scores only). It keeps a
    Wasserstein critic's outputs from drifting far from zero."""
    real_out = ops.convert_to_tensor(real_out)
    both = ops.concatenate([ops.reshape(real_out, (-1,)),
                            ops.reshape(ops.cast(fake_out, real_out.dtype), (-1,))], axis=0)
    return weight * ops.mean(ops.square(both))


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


__all__ += ["drift_penalty", "OrthogonalRegularizer"]


# ============================================================================================
# Chapter 4: least-squares GAN losses and the L1 reconstruction term (image translation)
# ============================================================================================

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


__all__ += ["lsgan_d_loss", "lsgan_g_loss", "l1_loss"]
