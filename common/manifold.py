"""Working on a generator's image manifold (book Chapter 6, iGAN).

Zhu et al. 2016, "Generative Visual Manipulation on the Natural Image Manifold": the images
``G(z)`` of a trained GAN lie on a low-dimensional manifold inside pixel space. A real photo is
*projected* onto it by searching for the code whose image is closest, and edited by searching
for a code whose image satisfies the user's constraints (brush strokes) while staying close to
the original code; moving along the straight line between two codes morphs one image into the
other.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

__all__ = ["interpolate_latents", "project_to_latent"]


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
