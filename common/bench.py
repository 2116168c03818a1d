"""Throughput benchmark of compiled train steps: ``python -m common.bench [name ...]``.

For every registered entry the same model is compiled five ways (eagerly, as a ``tf.function``
graph, with XLA ``jit_compile``, and the last two again under mixed precision) and
``train_on_batch`` is timed on one fixed batch after a warm-up. Printed as images/second and as a ratio to eager, measured
side by side in one process. This is a benchmark for people, not a test: timings on a
shared machine are noisy.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["BenchEntry", "register", "ENTRIES", "time_train_step", "run", "main"]


@dataclass
class BenchEntry:
    """One benchmark: ``make()`` returns ``(model, compile_kwargs, (x, y))``; the model is
    built fresh for every mode."""

    name: str
    description: str
    make: Callable
    batch_size: int


ENTRIES: dict[str, BenchEntry] = {}


def register(name: str, description: str, batch_size: int):
    """Decorator adding a factory to :data:`ENTRIES`."""
    def wrap(make):
        ENTRIES[name] = BenchEntry(name, description, make, batch_size)
        return make
    return wrap


@register("pixelcnn", "PixelCNN (book Ch. 1, 389,249 params) on binarised 28x28x1", batch_size=64)
def _pixelcnn(batch_size: int):
    import keras
    from common.ch01 import build_pixelcnn

    rng = np.random.default_rng(0)
    x = (rng.random((batch_size, 28, 28, 1)) > 0.8).astype("float32")
    model = build_pixelcnn()
    kwargs = dict(optimizer=keras.optimizers.RMSprop(1e-3), loss=keras.losses.BinaryCrossentropy())
    return model, kwargs, (x, x.astype("int32"))



@register("dcgan", "DCGAN train step (book Ch. 3: G 4,111,361 + D 22,337 params), one D and one G "
          "update on 28x28x1", batch_size=64)
def _dcgan(batch_size: int):
    import keras
    from common.ch03 import GAN, build_dcgan_discriminator, build_dcgan_generator

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size, 28, 28, 1)).astype("float32")
    z = rng.standard_normal((batch_size, 100)).astype("float32")  # fixed noise, fed as y
    model = GAN(build_dcgan_generator(), build_dcgan_discriminator())
    kwargs = dict(d_optimizer=keras.optimizers.RMSprop(3e-4), g_optimizer=keras.optimizers.RMSprop(3e-4))
    return model, kwargs, (x, z)


@register("wgan_gp", "WGAN-GP train step (book Ch. 3: G 5,190,657 + critic 4,107,393 params), "
          "5 critic updates with gradient penalty + 1 G update on 32x32x1; batch = 5 x 64 images",
          batch_size=320)
def _wgan_gp(batch_size: int):
    import keras
    from common.ch03 import WGANGP, build_wgan_critic, build_wgan_generator

    if batch_size % 5:
        raise ValueError("the WGAN-GP batch holds 5 critic minibatches: use a multiple of 5")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size, 32, 32, 1)).astype("float32")
    z = rng.standard_normal((batch_size, 128)).astype("float32")
    model = WGANGP(build_wgan_generator(), build_wgan_critic(norm=None, use_bias=False), n_critic=5)
    adam = dict(learning_rate=1e-4, beta_1=0.5, beta_2=0.9)
    kwargs = dict(d_optimizer=keras.optimizers.Adam(**adam), g_optimizer=keras.optimizers.Adam(**adam))
    return model, kwargs, (x, z)

#: How a train step is compiled (``run_eagerly``, ``jit_compile``) and the Keras dtype policy it is
#: built under: ``mixed_float16`` computes in float16 with float32 weights and a loss-scaled optimizer
#: (what ``HOIG_MIXED_PRECISION=1`` turns on for the notebooks). Mixed precision pays on GPUs with
#: tensor cores; on a CPU float16 is emulated and slower.
MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False, policy="float32"),
    "tf.function": dict(run_eagerly=False, jit_compile=False, policy="float32"),
    "XLA": dict(run_eagerly=False, jit_compile=True, policy="float32"),
    "mixed": dict(run_eagerly=False, jit_compile=False, policy="mixed_float16"),
    "mixed+XLA": dict(run_eagerly=False, jit_compile=True, policy="mixed_float16"),
}


def time_train_step(entry: BenchEntry, mode: str, steps: int, warmup: int = 2,
                    batch_size: int | None = None) -> float:
    """Images per second of ``entry``'s train step compiled in ``mode``."""
    import keras

    batch_size = batch_size or entry.batch_size
    options = dict(MODES[mode])
    before = keras.config.dtype_policy().name
    keras.mixed_precision.set_global_policy(options.pop("policy"))
    try:
        model, kwargs, (x, y) = entry.make(batch_size)
        model.compile(**kwargs, **options)
        for _ in range(warmup):
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        elapsed = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy(before)
    return steps * batch_size / elapsed


def run(names=None, steps: int = 10, modes=None, batch_size: int | None = None) -> list[dict]:
    """Benchmark the named entries (all by default) and print a table; returns its rows."""
    import tensorflow as tf

    names = list(names or ENTRIES)
    modes = list(modes or MODES)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    rows = []
    for name in names:
        if name not in ENTRIES:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {sorted(ENTRIES)}")
        entry = ENTRIES[name]
        batch = batch_size or entry.batch_size
        print(f"\n{entry.name}: {entry.description}; batch {batch}; {steps} steps; {device}")
        baseline = None
        for mode in modes:
            ips = time_train_step(entry, mode, steps, batch_size=batch)
            baseline = baseline or ips
            rows.append(dict(model=name, mode=mode, batch=batch, images_per_s=ips))
            print(f"  {mode:12s} {ips:10.1f} images/s   x{ips / baseline:5.2f} vs {modes[0]}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries to run (default all): {sorted(ENTRIES)}")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=None, help="override the entry's batch size")
    parser.add_argument("--modes", nargs="*", default=None, choices=list(MODES))
    args = parser.parse_args(argv)
    run(args.names, steps=args.steps, modes=args.modes, batch_size=args.batch)


# --------------------------------------------------------------------------- Chapter 4: translation
def _translation_pair(batch_size: int, side: int):
    rng = np.random.default_rng(0)
    shape = (batch_size, side, side, 3)
    return (rng.uniform(-1, 1, shape).astype("float32"), rng.uniform(-1, 1, shape).astype("float32"))


def _pix2pix_entry(batch_size: int, side: int, base_filters: int):
    from common.ch04 import Pix2Pix, patchgan_discriminator, unet_generator

    shape = (side, side, 3)
    model = Pix2Pix(unet_generator(shape, base_filters),
                    patchgan_discriminator(shape, base_filters=base_filters))
    return model, {}, _translation_pair(batch_size, side)


@register("pix2pix", "pix2pix train step (book Ch. 4: U-Net 13,514,880 + PatchGAN 2,768,641 "
          "params), one D and one G update at 256x256", batch_size=1)
def _pix2pix(batch_size: int):
    return _pix2pix_entry(batch_size, 256, 64)


@register("pix2pix_smoke", "pix2pix train step at the notebooks' smoke size (128x128, 16 base "
          "filters)", batch_size=1)
def _pix2pix_smoke(batch_size: int):
    return _pix2pix_entry(batch_size, 128, 16)


@register("cyclegan", "CycleGAN train step (book Ch. 4: two U-Nets + two 2,765,569-param "
          "PatchGANs), both D and both G updated at 256x256", batch_size=1)
def _cyclegan(batch_size: int):
    from common.ch04 import CycleGAN, patchgan_discriminator, unet_generator

    def d():
        return patchgan_discriminator(conditional=False, sigmoid=False)

    model = CycleGAN(unet_generator(), unet_generator(), d(), d())
    return model, {}, _translation_pair(batch_size, 256)


# --- Chapters 5-6: AdaIN style transfer and GauGAN ----------------------------------------

@register("adain", "AdaIN style-transfer train step (book Ch. 5: frozen VGG19 encoder, "
          "3,505,219-param decoder) on 256x256 content/style pairs", batch_size=8)
def _adain(batch_size: int):
    from common.ch05 import AdaINStyleTransfer

    rng = np.random.default_rng(0)
    content = rng.random((batch_size, 256, 256, 3), dtype=np.float32)
    style = rng.random((batch_size, 256, 256, 3), dtype=np.float32)
    model = AdaINStyleTransfer(weights=None)  # VGG19 with random weights: same speed, no download
    return model, {}, (content, style)


@register("gaugan", "GauGAN train step (book Ch. 6: SPADE generator, 2-scale PatchGAN, "
          "encoder, VGG loss) on 256x256 facades-size one-hot maps with 12 classes", batch_size=4)
def _gaugan(batch_size: int):
    from common.ch05 import STYLE_LAYERS, vgg_feature_extractor
    from common.ch06 import GauGAN, MultiScaleDiscriminator, build_gaugan_encoder, build_gaugan_generator

    rng = np.random.default_rng(0)
    seg = np.eye(12, dtype=np.float32)[rng.integers(0, 12, (batch_size, 256, 256))]
    image = rng.uniform(-1, 1, (batch_size, 256, 256, 3)).astype(np.float32)
    vgg = vgg_feature_extractor(STYLE_LAYERS, weights=None)  # random weights: same speed, no download
    model = GauGAN(build_gaugan_generator(), MultiScaleDiscriminator(), build_gaugan_encoder(), vgg=vgg)
    return model, {}, (seg, image)



# --- Chapters 7-8: StyleGAN and SAGAN ------------------------------------------------------

@register("stylegan", "StyleGAN train step (book Ch. 7: mapping net + synthesis 4->32 with "
          "widths capped at 128, ProGAN critic), WGAN-GP + drift, style mixing, at 32x32",
          batch_size=16)
def _stylegan(batch_size: int):
    from common.ch07 import ProgressiveGAN, build_stylegan

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype("float32")
    g, d = build_stylegan(32, z_dim=128, w_dim=128, max_filters=128)
    model = ProgressiveGAN(g, d)
    model.grow(32, "stable", steps=10**6)
    return model, {}, (x, np.zeros((batch_size,), "float32"))


@register("sagan", "SAGAN train step (book Ch. 8: G 2,347,236 + D 2,375,218 trainable params, "
          "spectral norm everywhere), one D and one G hinge update on 32x32 CIFAR-size images",
          batch_size=32)
def _sagan(batch_size: int):
    from common.ch08 import ConditionalHingeGAN, build_sagan_discriminator, build_sagan_generator

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch_size, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, batch_size).astype("int32")
    model = ConditionalHingeGAN(build_sagan_generator(), build_sagan_discriminator())
    return model, {}, (x, labels)

if __name__ == "__main__":
    main()
