"""Chapter 1's "generative models without a network": statistics of a set of face images."""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["select", "conditional_face", "conditional_chain", "pixelwise_random_sample",
           "gaussian_pixel_sample"]


def select(attributes: Mapping[str, np.ndarray], conditions: Mapping[str, bool]) -> np.ndarray:
    """Boolean index of the images whose attributes equal every value in ``conditions``.

    This is conditioning in the counting sense: p(x | y) is estimated from the images
    with attributes y. An empty ``conditions`` selects everything.
    """
    n = len(next(iter(attributes.values())))
    keep = np.ones(n, dtype=bool)
    for name, value in conditions.items():
        if name not in attributes:
            raise KeyError(f"unknown attribute {name!r}")
        keep &= np.asarray(attributes[name], dtype=bool) == bool(value)
    return keep


def conditional_face(images: np.ndarray, attributes, conditions, stat: str = "mean",
                     max_images: int | None = None):
    """Mean or median face of the images matching ``conditions``.

    Returns ``(face, count)``: the face as a uint8 image and the number of matching images,
    or ``(None, 0)`` when nothing matches. The mean is accumulated in float64; the median is
    taken over at most ``max_images`` of the matches (it needs them all in memory at once).
    """
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    index = np.flatnonzero(select(attributes, conditions))
    count = int(index.size)
    if count == 0:
        return None, 0
    if stat == "mean":
        total = np.zeros(images.shape[1:], dtype=np.float64)
        for start in range(0, count, 1000):  # chunks keep the float copy small
            total += images[index[start:start + 1000]].sum(axis=0, dtype=np.float64)
        face = total / count
    else:
        chosen = index if max_images is None else index[:max_images]
        face = np.median(images[chosen], axis=0)
    return np.clip(np.rint(face), 0, 255).astype(np.uint8), count


def pixelwise_random_sample(images: np.ndarray, rng: np.random.Generator | int | None = None):
    """New image whose every pixel (all channels together) is copied from an image of the
    set chosen uniformly at random, independently per pixel: a sample from the product of
    the per-pixel empirical distributions."""
    rng = np.random.default_rng(rng)
    n, h, w = images.shape[:3]
    source = rng.integers(0, n, size=(h, w))
    rows, cols = np.indices((h, w))
    return images[source, rows, cols]


def gaussian_pixel_sample(images: np.ndarray, num: int, rng=None) -> np.ndarray:
    """Fit an independent Gaussian to every pixel-channel (mean and std over the set) and
    draw ``num`` images from it, clipped to uint8."""
    rng = np.random.default_rng(rng)
    x = images.astype(np.float64)
    mu, sigma = x.mean(axis=0), x.std(axis=0)
    draws = rng.normal(mu, sigma, size=(num, *images.shape[1:]))
    return np.clip(np.rint(draws), 0, 255).astype(np.uint8)


def conditional_chain(images: np.ndarray, attributes, steps, stat: str = "mean",
                      max_images: int | None = None):
    """Conditional faces for a growing list of conditions.

    ``steps`` is a list of ``(attribute, value)`` pairs; face k is conditioned on the first
    k+1 of them. Returns a list of ``(conditions, face, count)``; ``face`` is None when no
    image matches.
    """
    results, conditions = [], {}
    for name, value in steps:
        conditions = {**conditions, name: value}
        face, count = conditional_face(images, attributes, conditions, stat, max_images)
        results.append((dict(conditions), face, count))
    return results
