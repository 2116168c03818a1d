"""Proof that the models learn: ``python -m common.quality [MODEL ...]``.

Trains the chapters' own networks and training models (imported from ``common``, as the
notebooks export them) at reduced width on real data that ships inside installed packages,
so it runs offline: scikit-learn's 1,797 handwritten 8x8 digits and scikit-image's photos;
each figure is printed beside baselines (the model untrained, real data, noise):

- generative models of digits: the Frechet distance (Heusel et al. 2017's FID, computed in
  the feature space of a digits classifier this module trains, not Inception) between 360
  samples and the 360 held-out test digits, and the entropy of the classifier's class
  histogram of the samples (log2 10 = 3.32 bits when all ten classes are equally common);
  for the conditional GAN also the fraction of samples classified as the class asked for;
- PixelCNN: held-out bits per pixel; autoencoder: held-out mean squared reconstruction error;
- pix2pix: greyscale to colour on crops of photos, L1 and SSIM on a held-out region;
- neural style transfer: the weighted style and content terms before and after optimising.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np

__all__ = ["MODELS", "digits", "judge", "frechet_distance", "class_entropy", "judge_samples",
           "run", "main"]

N_EVAL = 360  # samples per figure: the size of the held-out digits set


# --------------------------------------------------------------------------- data and judge

@functools.lru_cache(maxsize=None)
def digits(size: int = 28, seed: int = 0):
    """scikit-learn's 1,797 real 8x8 digits (UCI), bilinearly resized to ``size`` x ``size``,
    in [-1, 1]: ``(x_train, y_train, x_test, y_test)``, 1,437 / 360 with a fixed split."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    d = load_digits()
    x = tf.image.resize(d.images[..., None].astype("float32") / 16.0, (size, size)).numpy()
    x = np.clip(2.0 * x - 1.0, -1.0, 1.0)
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:N_EVAL], order[N_EVAL:]
    return x[train], d.target[train], x[test], d.target[test]


@functools.lru_cache(maxsize=None)
def judge(seed: int = 0):
    """A small CNN digits classifier (two 3x3 conv + pool stages, a 128-unit ``features``
    layer), trained here on the training digits with random shifts. Returns
    ``(classifier, judge, test_accuracy)``; ``judge`` returns features and logits in one pass."""
    import keras

    x_train, y_train, x_test, y_test = digits(28, seed)
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = L.RandomTranslation(0.1, 0.1, fill_value=-1.0, fill_mode="constant")(inputs)
    for filters in (32, 64):
        x = L.MaxPooling2D()(L.Conv2D(filters, 3, activation="relu", padding="same")(x))
    features = L.Dense(128, activation="relu", name="features")(L.Dropout(0.3)(L.Flatten()(x)))
    model = keras.Model(inputs, L.Dense(10)(features), name="digits_judge")
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=25, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return model, keras.Model(inputs, [features, model.output]), accuracy


def _judge_input(images) -> np.ndarray:
    import tensorflow as tf
    x = np.asarray(images, dtype="float32")
    if x.shape[1:3] != (28, 28):
        x = tf.image.resize(x, (28, 28)).numpy()
    return np.clip(x, -1.0, 1.0)


def judge_samples(images, seed: int = 0):
    """The judge's ``(features, predicted classes)`` for images in [-1, 1] of any square size."""
    features, logits = judge(seed)[1].predict(_judge_input(images), verbose=0, batch_size=256)
    return features, logits.argmax(-1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between Gaussians fitted to two
    sets of feature vectors (the Frechet inception distance of Heusel et al. 2017)."""
    from scipy import linalg
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(ca @ cb).real
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(ca + cb - 2.0 * root))


def class_entropy(classes, num_classes: int = 10) -> float:
    """Entropy in bits of the histogram of predicted classes (log2 10 = 3.32 when uniform)."""
    p = np.bincount(np.asarray(classes).ravel(), minlength=num_classes) / len(classes)
    p = p[p > 0]
    return max(0.0, float(-(p * np.log2(p)).sum()))  # never -0.0


@functools.lru_cache(maxsize=None)
def _test_features(seed: int):
    return judge_samples(digits(28, seed)[2], seed)[0]


def _digit_figures(images, seed, wanted=None) -> dict:
    """FD to the held-out digits and class entropy; with ``wanted`` classes, also agreement."""
    feats, classes = judge_samples(images, seed)
    figures = {"fd": frechet_distance(feats, _test_features(seed)), "entropy": class_entropy(classes)}
    if wanted is not None:
        figures["agreement"] = float((classes == wanted).mean())
    return figures


def _generative_baselines(untrained, seed) -> dict:
    x_train, _, _, _ = digits(28, seed)
    rng = np.random.default_rng(seed)
    real = x_train[rng.choice(len(x_train), N_EVAL, replace=False)]
    noise = rng.uniform(-1, 1, real.shape).astype("float32")
    return {"untrained": _digit_figures(untrained, seed), "real": _digit_figures(real, seed),
            "noise": _digit_figures(noise, seed)}


def _fit(model, x, batch: int, steps: int, seed: int, verbose: int):
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x[0] if isinstance(x, tuple) else x),
                                                       seed=seed)
    model.fit(ds.repeat().batch(batch, drop_remainder=True), steps_per_epoch=steps, epochs=1,
              verbose=verbose)


# --------------------------------------------------------------------------- models

def _gan(kind: str, steps: int, seed: int, verbose: int) -> dict:
    import keras
    from common import ch03

    size = 28 if kind == "dcgan" else 32
    x_train = digits(size, seed)[0]
    keras.utils.set_random_seed(seed)
    if kind == "dcgan":  # the notebook's networks, the generator at 64 channels of 512
        g = ch03.build_dcgan_generator(z_dim=100, width=64)
        model = ch03.GAN(g, ch03.build_dcgan_discriminator(width=32))
        model.compile(keras.optimizers.RMSprop(3e-4), keras.optimizers.RMSprop(3e-4))
        batch = 64
    else:  # WGAN-GP: the notebook's losses, n_critic and Adam settings at width 64 of 512
        g = ch03.build_wgan_generator(32, 1, 128, width=64)
        critic = ch03.build_wgan_critic(32, 1, width=64, norm=None, use_bias=False)
        model = ch03.WGANGP(g, critic, n_critic=5, gp_weight=10.0)
        adam = dict(learning_rate=1e-4, beta_1=0.5, beta_2=0.9)
        model.compile(keras.optimizers.Adam(**adam), keras.optimizers.Adam(**adam))
        batch = 64 * 5  # one step reads a minibatch for each critic update
    z = np.random.default_rng(seed + 1).standard_normal((N_EVAL, model.latent_dim)).astype("float32")
    base = _generative_baselines(g.predict(z, verbose=0), seed)
    _fit(model, x_train, batch, steps, seed, verbose)
    samples = g.predict(z, verbose=0)
    return dict(figures=_digit_figures(samples, seed), baselines=base, samples=samples[:64])


def _cgan(steps: int, seed: int, verbose: int) -> dict:
    import keras
    from common import ch04

    x_train, y_train, _, _ = digits(32, seed)
    keras.utils.set_random_seed(seed)
    g = ch04.conditional_dcgan_generator(100, 10, width=16, image_shape=(32, 32, 1))
    d = ch04.conditional_dcgan_discriminator(10, width=16, image_shape=(32, 32, 1))
    model = ch04.ConditionalGAN(g, d)
    # Adam(2e-4, beta_1 0.5) of Radford et al. (2016) rather than the notebook's RMSprop(1e-4):
    # with either, the class takes hold late (agreement near chance, then rising once the
    # discriminator rejects real digits with wrong labels). Seed 0 at width 32: 0.9 after 600
    # steps with Adam, 1,400 with RMSprop(1e-4); at width 16 with Adam, seed 2 needs 1,200
    adam = dict(learning_rate=2e-4, beta_1=0.5)
    model.compile({"generator": keras.optimizers.Adam(**adam),
                   "discriminator": keras.optimizers.Adam(**adam)})
    z = np.random.default_rng(seed + 1).standard_normal((N_EVAL, 100)).astype("float32")
    wanted = np.arange(N_EVAL) % 10
    images = g.predict([z, wanted[:, None]], verbose=0)
    base = _generative_baselines(images, seed)
    base["untrained"]["agreement"] = _digit_figures(images, seed, wanted)["agreement"]
    _fit(model, (x_train, y_train), 64, steps, seed, verbose)
    images = g.predict([z, wanted[:, None]], verbose=0)
    figures = _digit_figures(images, seed, wanted)
    # the picture: one column per class, as the notebook's class grid
    grid = images[:80].reshape(8, 10, *images.shape[1:]).reshape(80, *images.shape[1:])
    return dict(figures=figures, baselines=base, samples=grid, columns=10)


def _vae(steps: int, seed: int, verbose: int) -> dict:
    import keras
    from common import ch02

    x_train = (digits(28, seed)[0] + 1.0) / 2.0  # the notebook's [0, 1] images
    keras.utils.set_random_seed(seed)
    decoder = ch02.build_mnist_decoder(z_dim=2)
    model = ch02.VAE(ch02.build_mnist_vae_encoder(z_dim=2, seed=seed), decoder, kl_weight=0.01,
                     rc_loss="bce")
    model.compile(keras.optimizers.Adam(1e-3))
    z = np.random.default_rng(seed + 1).standard_normal((N_EVAL, 2)).astype("float32")
    base = _generative_baselines(2.0 * decoder.predict(z, verbose=0) - 1.0, seed)
    _fit(model, x_train, 64, steps, seed, verbose)
    samples = 2.0 * decoder.predict(z, verbose=0) - 1.0
    return dict(figures=_digit_figures(samples, seed), baselines=base, samples=samples[:64])


def _autoencoder(steps: int, seed: int, verbose: int) -> dict:
    import keras
    from common import ch02

    x_train, _, x_test, _ = (v if v.ndim == 1 else (v + 1.0) / 2.0 for v in digits(28, seed))
    keras.utils.set_random_seed(seed)
    model = ch02.build_autoencoder(ch02.build_mnist_encoder(10), ch02.build_mnist_decoder(10))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    mse = lambda: float(np.mean((model.predict(x_test, verbose=0) - x_test) ** 2))  # noqa: E731
    base = {"untrained": {"mse": mse()},
            "mean image": {"mse": float(np.mean((x_train.mean(0) - x_test) ** 2))}}
    _fit(model, (x_train, x_train), 64, steps, seed, verbose)
    pairs = np.stack([x_test[:32], model.predict(x_test[:32], verbose=0)], 1)
    return dict(figures={"mse": mse()}, baselines=base, samples=2.0 * pairs.reshape(64, 28, 28, 1) - 1.0)


def _pixelcnn(steps: int, seed: int, verbose: int) -> dict:
    import keras
    from common.ch01 import build_pixelcnn, pixelcnn_sample
    from common.data import load_digits_binary
    from common.demo import bits_per_dim

    x_train, x_test = load_digits_binary(seed=seed)
    keras.utils.set_random_seed(seed)
    model = build_pixelcnn(input_shape=(8, 8, 1), hidden=32, out_features=32, res_blocks=3)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.BinaryCrossentropy())
    bits = lambda: bits_per_dim(model.predict(x_test, verbose=0), x_test)  # noqa: E731
    marginal = np.clip(x_train.mean(0, keepdims=True), 1e-3, 1 - 1e-3)
    base = {"untrained": {"bits": bits()}, "uniform": {"bits": 1.0},
            "pixel frequencies": {"bits": bits_per_dim(np.broadcast_to(marginal, x_test.shape), x_test)}}
    _fit(model, (x_train, x_train), 32, steps, seed, verbose)
    samples = pixelcnn_sample(model, 64, (8, 8, 1), seed=seed)
    return dict(figures={"bits": bits()}, baselines=base, samples=2.0 * samples - 1.0)


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def colour_pairs(size: int = 128, seed: int = 0, n_train: int = 256):
    """Greyscale-to-colour pairs ``(A, B)`` in [-1, 1] from scikit-image's photos, each resized
    to 3 x ``size`` square: random crops of ``size`` from the left two thirds for training, and
    for testing the right third of each photo (pixels the model never saw)."""
    from skimage.color import gray2rgb, rgb2gray
    from .data import sample_image

    photos = [sample_image(name, 3 * size) for name in PHOTOS]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n_train):
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(0, 2 * size + 1), rng.integers(0, size + 1)
        crop = photo[top:top + size, left:left + size]
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    tests = [p[top:top + size, 2 * size:] for p in photos for top in (0, size, 2 * size)]

    def pairs(b):
        b = np.stack(b).astype("float32")
        a = gray2rgb(rgb2gray(b)).astype("float32")
        return 2.0 * a - 1.0, 2.0 * b - 1.0
    return pairs(crops), pairs(tests)


def _pix2pix(steps: int, seed: int, verbose: int) -> dict:
    import keras
    import tensorflow as tf
    from common import ch04

    (a_train, b_train), (a_test, b_test) = colour_pairs(128, seed)
    keras.utils.set_random_seed(seed)
    g = ch04.unet_generator((128, 128, 3), base_filters=16)
    d = ch04.patchgan_discriminator((128, 128, 3), base_filters=16)
    model = ch04.Pix2Pix(g, d)
    model.compile()

    def figures(b):
        b01, t01 = (b + 1.0) / 2.0, (b_test + 1.0) / 2.0
        return {"l1": float(np.mean(np.abs(b - b_test)) / 2.0),  # in [0, 1] units
                "ssim": float(tf.reduce_mean(tf.image.ssim(b01, t01, 1.0)))}
    predict = lambda: g.predict(a_test, verbose=0, batch_size=8)  # noqa: E731
    base = {"untrained": figures(predict()), "identity (grey)": figures(a_test)}
    _fit(model, (a_train, b_train), 4, steps, seed, verbose)
    fake = predict()
    rows = np.stack([a_test[::3], fake[::3], b_test[::3]], 1).reshape(-1, 128, 128, 3)
    return dict(figures=figures(fake), baselines=base, samples=rows, columns=3)


def _style(steps: int, seed: int, verbose: int) -> dict:
    import keras
    from common import ch05
    from .data import sample_image

    try:  # ImageNet weights where Keras can download them (or has them cached)
        vgg, weights = ch05.build_vgg19("imagenet"), "imagenet"
    except ch05.PretrainedWeightsUnavailableError:
        keras.utils.set_random_seed(seed)
        vgg, weights = ch05.build_vgg19(None), "random"
    nst = ch05.NeuralStyleTransfer(vgg=vgg)  # the notebook's weights: content 1, style 1e-3
    content, style = sample_image("astronaut", 128), sample_image("immunohistochemistry", 128)
    image, history = nst.stylize(content, style, steps=steps)

    def terms(i):
        return {"content": history["content"][i], "style": nst.style_weight * history["style"][i],
                "vgg weights": weights}
    samples = 2.0 * np.stack([content, image, style]) - 1.0
    return dict(figures=terms(-1), baselines={"step 0 (the photo)": terms(0)}, samples=samples,
                columns=3)


#: name -> (runner, default steps, the figure's key, title)
MODELS = {
    "dcgan": (functools.partial(_gan, "dcgan"), 600, "fd", "Chapter 3 DCGAN"),
    "wgan_gp": (functools.partial(_gan, "wgan_gp"), 300, "fd", "Chapter 3 WGAN-GP"),
    "vae": (_vae, 600, "fd", "Chapter 2 VAE (z = 2)"),
    "cgan": (_cgan, 1200, "agreement", "Chapter 4 conditional GAN"),
    "pixelcnn": (_pixelcnn, 900, "bits", "Chapter 1 PixelCNN (8x8 binary)"),
    "autoencoder": (_autoencoder, 600, "mse", "Chapter 2 autoencoder (z = 10)"),
    "pix2pix": (_pix2pix, 600, "l1", "Chapter 4 pix2pix (grey to colour)"),
    "style": (_style, 100, "style", "Chapter 5 neural style transfer"),
}


def run(name: str, steps: int | None = None, seed: int = 0, verbose: int = 0) -> dict:
    """Train model ``name`` for ``steps`` updates (its default when None) and return its figures,
    baselines, a batch of samples for a picture, the steps and the seconds it took."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    steps = int(MODELS[name][1] if steps is None else steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    start = time.perf_counter()
    result = MODELS[name][0](steps, seed, verbose)
    result.update(name=name, steps=steps, seconds=time.perf_counter() - start)
    return result


def _fmt(figures: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())


def save_picture(result: dict, out_dir) -> str:
    """Write ``result``'s samples as a PNG grid ``<out_dir>/<name>.png``; returns the path."""
    import matplotlib.pyplot as plt
    from .viz import grid_array

    images = (np.clip(result["samples"], -1, 1) + 1.0) / 2.0
    small = images.shape[1] < 28  # 8x8 digits: enlarged (nearest neighbour), framed in grey
    k = -(-28 // images.shape[1])
    images = images.repeat(k, axis=1).repeat(k, axis=2)
    grid = grid_array(images, cols=result.get("columns", 8), value_range=(0, 1),
                      pad=3 if small else 1, pad_value=0.5 if small else 1.0)
    path = Path(out_dir) / f"{result['name']}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    return str(path)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS), help=f"any of {list(MODELS)}")
    parser.add_argument("--steps", type=int, default=None, help="updates per model (default: each model's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/quality", help="folder for one PNG per model")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    start = time.perf_counter()
    _, _, accuracy = judge(args.seed)
    print(f"digits judge: held-out accuracy {accuracy:.3f} ({time.perf_counter() - start:.0f}s)")
    results = []
    for name in args.models:
        result = run(name, args.steps, args.seed)
        png = save_picture(result, args.out)
        print(f"\n{name}: {MODELS[name][3]}, {result['steps']} steps, {result['seconds'] / 60:.1f} min -> {png}")
        print(f"  trained            {_fmt(result['figures'])}")
        for label, figures in result["baselines"].items():
            print(f"  {label:<18} {_fmt(figures)}")
        results.append(result)
    print("\n| model | steps | minutes (2 CPU cores) | metric | trained | baselines |\n" + "|---" * 6 + "|")
    for r in results:
        key = MODELS[r["name"]][2]
        base = "; ".join(f"{k} {v[key]:.3f}" for k, v in r["baselines"].items() if key in v)
        if "vgg weights" in r["figures"]:
            base += f"; VGG19 weights: {r['figures']['vgg weights']}"
        print(f"| {MODELS[r['name']][3]} | {r['steps']} | {r['seconds'] / 60:.1f} | {key} | "
              f"{r['figures'][key]:.3f} | {base} |")
    return results


if __name__ == "__main__":
    main()
