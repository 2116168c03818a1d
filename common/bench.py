"""Throughput benchmark of compiled train steps: ``python -m common.bench [name ...]``.

For every registered entry the same model is compiled three ways (eagerly, as a
``tf.function`` graph, and with XLA ``jit_compile``) and ``train_on_batch`` is timed on one
fixed batch after a warm-up. Printed as images/second and as a ratio to eager, measured
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
    from .models import build_pixelcnn

    rng = np.random.default_rng(0)
    x = (rng.random((batch_size, 28, 28, 1)) > 0.8).astype("float32")
    model = build_pixelcnn()
    kwargs = dict(optimizer=keras.optimizers.RMSprop(1e-3), loss=keras.losses.BinaryCrossentropy())
    return model, kwargs, (x, x.astype("int32"))


MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False),
    "tf.function": dict(run_eagerly=False, jit_compile=False),
    "XLA": dict(run_eagerly=False, jit_compile=True),
}


def time_train_step(entry: BenchEntry, mode: str, steps: int, warmup: int = 2,
                    batch_size: int | None = None) -> float:
    """Images per second of ``entry``'s train step compiled in ``mode``."""
    batch_size = batch_size or entry.batch_size
    model, kwargs, (x, y) = entry.make(batch_size)
    model.compile(**kwargs, **MODES[mode])
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    elapsed = time.perf_counter() - start
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


if __name__ == "__main__":
    main()
