"""Sampling from autoregressive models, one pixel at a time."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["pixelcnn_sample"]


def pixelcnn_sample(model, n: int, image_shape=(28, 28, 1), seed: int = 0, canvas: float = 0.0,
                    prefix=None, prefix_length: int = 0, callback=None, callback_every: int = 1):
    """Draw ``n`` images from a PixelCNN in raster order (row, column, channel).

    For each position the model is run on the current canvas (a compiled forward pass,
    not ``predict``) and the pixel is drawn from the model's distribution there: a
    Bernoulli for a sigmoid output, a categorical for a softmax output (the value is then
    the level index divided by ``levels - 1``). Uniform numbers are drawn up front from
    ``seed``, so a causal model gives the same images whatever ``canvas`` value the
    not-yet-sampled pixels are filled with.

    ``prefix`` (images of ``image_shape``) with ``prefix_length`` keeps the first
    ``prefix_length`` raster positions of those images and samples the rest (completion).
    ``callback(step, canvas)`` is called every ``callback_every`` positions with a numpy copy.
    Returns a float32 numpy array ``(n, *image_shape)``.
    """
    h, w, c = image_shape
    rng = tf.random.Generator.from_seed(seed)
    uniform = rng.uniform((n, h, w, c)).numpy()
    image = np.full((n, h, w, c), canvas, dtype=np.float32)
    if prefix is not None:
        prefix = np.asarray(prefix, dtype=np.float32).reshape(n, h, w, c)
        flat_image, flat_prefix = image.reshape(n, -1), prefix.reshape(n, -1)
        flat_image[:, : prefix_length * c] = flat_prefix[:, : prefix_length * c]
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    start = prefix_length if prefix is not None else 0
    step = 0
    for pos in range(start, h * w):
        r, col = divmod(pos, w)
        probs = forward(tf.constant(image)).numpy()
        for ch in range(c):
            if probs.shape[-1] == c:  # one sigmoid probability per channel
                image[:, r, col, ch] = (uniform[:, r, col, ch] < probs[:, r, col, ch]).astype(np.float32)
            else:  # softmax over levels: inverse-CDF sampling with the same uniform numbers
                p = probs[:, r, col, :]
                cdf = np.cumsum(p, axis=-1)
                level = np.minimum((uniform[:, r, col, ch, None] >= cdf).sum(-1), p.shape[-1] - 1)
                image[:, r, col, ch] = level / (p.shape[-1] - 1)
        step += 1
        if callback is not None and (step % callback_every == 0 or pos == h * w - 1):
            callback(step, image.copy())
    return image
