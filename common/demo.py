"""The project's demo: ``python -m common.demo``.

Trains a small PixelCNN (book Chapter 1) on scikit-learn's real handwritten 8x8 digits,
which ship inside scikit-learn, so it runs offline on a laptop CPU in a few minutes. It
reports the test negative log-likelihood in bits per pixel beside two baselines (a fair
coin per pixel, and independent per-pixel frequencies), then draws digits pixel by pixel
and writes them as a PNG grid under ``outputs/``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

LN2 = math.log(2.0)


def bits_per_dim(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary negative log-likelihood of ``targets`` under Bernoulli ``probs``, in bits."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    nll = -(targets * np.log(p) + (1 - targets) * np.log1p(-p))
    return float(nll.mean() / LN2)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--res-blocks", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    from .data import load_digits_binary
    from common.ch01 import build_pixelcnn
    from common.ch01 import pixelcnn_sample
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .viz import grid_array

    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    x_train, x_test = load_digits_binary(seed=args.seed)
    print(f"data: {len(x_train)} train / {len(x_test)} test real handwritten digits, 8x8 binary "
          f"(scikit-learn's bundled copy of the UCI digits)")

    model = build_pixelcnn(input_shape=(8, 8, 1), hidden=args.hidden, out_features=args.hidden,
                           res_blocks=args.res_blocks)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=keras.losses.BinaryCrossentropy())
    print(f"model: PixelCNN, {model.count_params():,} parameters; training {args.epochs} epochs")
    # 10% of the training digits are held out to stop training when it starts to overfit;
    # the test digits are only used for the final number.
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True)
    history = model.fit(x_train, x_train, validation_split=0.1, epochs=args.epochs,
                        batch_size=args.batch, callbacks=[stop], verbose=2)

    test_bits = bits_per_dim(model.predict(x_test, verbose=0), x_test)
    marginal = np.clip(x_train.mean(axis=0, keepdims=True), 1e-3, 1 - 1e-3)
    independent_bits = bits_per_dim(np.broadcast_to(marginal, x_test.shape), x_test)
    print("\ntest negative log-likelihood, bits per pixel (lower is better):")
    print(f"  uniform baseline (fair coin per pixel)      {1.0:.3f}")
    print(f"  independent per-pixel frequencies           {independent_bits:.3f}")
    print(f"  PixelCNN                                    {test_bits:.3f}")

    t0 = time.perf_counter()
    samples = pixelcnn_sample(model, args.samples, (8, 8, 1), seed=args.seed)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = str(out_dir / "pixelcnn_digits.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, batch, title in ((axes[0], x_test[: args.samples], "real test digits"),
                             (axes[1], samples, f"PixelCNN samples ({test_bits:.3f} bits/pixel)")):
        ax.imshow(grid_array(batch, pad_value=0.5)[..., 0], cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    print(f"\nsampled {args.samples} digits pixel by pixel in {time.perf_counter() - t0:.1f}s -> {png}")
    print(f"total time {time.perf_counter() - start:.0f}s")
    return dict(test_bits=test_bits, uniform_bits=1.0, independent_bits=independent_bits,
                png=png, history=history.history)


if __name__ == "__main__":
    main()
