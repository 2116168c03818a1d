"""Working in the latent space of a variational autoencoder (book Chapter 2).

Statistics of the encoder's posterior over a dataset, the "sampling trick" that draws new
codes from where the encoder actually puts them, attribute vectors (mean code of the images
with an attribute minus mean code of those without; latent arithmetic as in White 2016,
"Sampling Generative Networks", and Larsen et al. 2016, "Autoencoding beyond pixels using a
learned similarity metric"), and the plots of a 2-D latent space.

Encoders here follow :func:`common.models.build_mnist_encoder` / ``build_face_encoder``:
``encoder(x)`` returns ``[z, mean, logvar]``; the functions use the deterministic ``mean``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import matplotlib.pyplot as plt

__all__ = ["LatentStats", "encode_mean", "latent_statistics", "sample_latents",
           "attribute_vectors", "save_vectors", "load_vectors", "edit_latent",
           "latent_scatter", "latent_sweep", "plot_latent_sweep"]


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
