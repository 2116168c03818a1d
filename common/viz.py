"""Pictures: image grids, loss curves and masks, for the notebooks and the demo."""

from __future__ import annotations

import io

import numpy as np
import matplotlib.pyplot as plt

from .config import positive

__all__ = ["to_unit_range", "grid_array", "image_grid", "save_grid", "to_png_bytes",
           "plot_history", "plot_mask", "translation_grid"]


def to_unit_range(images, value_range=None) -> np.ndarray:
    """Images as float32 in [0, 1].

    ``value_range`` is ``(low, high)`` of the input; when omitted it is guessed: uint8 ->
    (0, 255), any negative value -> (-1, 1), otherwise (0, 1).
    """
    images = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
    if value_range is None:
        if images.dtype == np.uint8:
            value_range = (0, 255)
        elif images.size and images.min() < 0:
            value_range = (-1, 1)
        else:
            value_range = (0, 1)
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    out = (images.astype(np.float32) - low) / float(high - low)
    return np.clip(out, 0.0, 1.0)


def _layout(n: int, rows, cols):
    """``(rows, cols)`` of a grid for ``n`` images: about square when neither is given."""
    if n == 0:
        raise ValueError("images is empty: there is nothing to draw")
    positive(**{k: v for k, v in dict(rows=rows, cols=cols).items() if v is not None})
    if cols is None:
        cols = int(np.ceil(np.sqrt(n))) if rows is None else int(np.ceil(n / rows))
    return rows or int(np.ceil(n / cols)), cols


def grid_array(images, rows: int | None = None, cols: int | None = None,
               value_range=None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch ``(N, H, W[, C])`` into one ``(rows*H, cols*W, C)`` float image in [0, 1]."""
    images = to_unit_range(images, value_range)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W[, C]), got shape {images.shape}")
    n, h, w, c = images.shape
    rows, cols = _layout(n, rows, cols)
    if pad < 0:
        raise ValueError(f"pad must be 0 or more pixels, got {pad!r}")
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.float32)
    for i in range(min(n, rows * cols)):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        canvas[y:y + h, x:x + w] = images[i]
    return canvas


def image_grid(images, rows: int | None = None, cols: int | None = None, value_range=None,
               titles=None, scale: float = 1.6, suptitle: str | None = None):
    """Show a batch of images in a rows x cols grid, one axis each, no ticks.

    Grey images (one channel) use the grey colour map. Returns the matplotlib figure.
    """
    images = to_unit_range(images, value_range)
    n = len(images)
    rows, cols = _layout(n, rows, cols)
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():  # a thin frame, so white images stay visible
            spine.set_color("0.75")
        img = images[i]
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def to_png_bytes(image, value_range=None, scale: int = 1) -> bytes:
    """Encode one image ``(H, W[, C])`` as PNG bytes (for ipywidgets.Image), optionally
    enlarged ``scale`` times with nearest-neighbour repetition."""
    positive(scale=scale)
    img = to_unit_range(image, value_range)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    plt.imsave(buffer, img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, format="png")
    return buffer.getvalue()


def save_grid(images, path, rows=None, cols=None, value_range=None, scale: int = 4) -> str:
    """Write a grid of images to a PNG file and return its path."""
    data = to_png_bytes(grid_array(images, rows, cols, value_range), value_range=(0, 1), scale=scale)
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def plot_history(history, keys=None, title: str | None = None, ax=None):
    """Loss curves from a Keras ``History`` (or its ``.history`` dict), one line per key."""
    logs = getattr(history, "history", history)
    keys = list(keys or logs.keys())
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    plotted = 0
    for key in keys:
        values = logs.get(key)
        if values is None or len(values) == 0:  # e.g. a resumed run that had already finished: fit ran no epoch
            continue
        plotted += 1
        ax.plot(np.arange(1, len(values) + 1), values, marker="o" if len(values) < 30 else None,
                label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    if title:
        ax.set_title(title)
    if plotted:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no epochs in this history\n(training had already finished)",
                ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return ax


def plot_mask(mask, ax=None, title: str | None = None):
    """Draw a k x k kernel mask: white squares are 1 (visible), black are 0; the centre tap
    is outlined in red."""
    m = np.asarray(mask)
    m = m.reshape(m.shape[0], m.shape[1], -1)[..., 0]
    k = m.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(2.5, 2.5))
    ax.imshow(m, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks(np.arange(-0.5, k), minor=True)
    ax.set_yticks(np.arange(-0.5, k), minor=True)
    ax.grid(which="minor", color="0.5", linewidth=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    c = k // 2
    ax.add_patch(plt.Rectangle((c - 0.5, c - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    if title:
        ax.set_title(title)
    return ax


def translation_grid(columns, titles=None, scale: float = 2.2, suptitle: str | None = None):
    """Show rows of ``[input, target, output, ...]``: ``columns`` is a list of image batches
    ``(N, H, W, C)`` in [-1, 1] (one per column, same N), mapped to [0, 1] for display.
    Returns the matplotlib figure."""
    columns = [np.clip((np.asarray(c, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0) for c in columns]
    if not columns or len({len(c) for c in columns}) != 1 or not len(columns[0]):
        raise ValueError(f"columns must be image batches of one same length > 0, got {[len(c) for c in columns]}")
    rows, cols = len(columns[0]), len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            img = columns[c][r]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img,
                      cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None and r == 0:
                ax.set_title(str(titles[c]), fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
