"""Full-size dry run of notebooks: ``python -m common.dryrun PATH.ipynb [...]``.

Executes each notebook top to bottom with its FULL hyperparameters (widths, batch sizes, image
sizes, step counts) on offline mock data of the real shapes and sizes (``HOIG_DRYRUN=1``, see
:mod:`common.config`), but cuts every training loop short: each ``Model.fit`` runs one epoch of
3 steps (its callbacks included) and each :func:`common.config.steps` loop stops after 3 steps.
It prints, per loop, the steps the full run would take, the seconds per step measured here (the
median of the steps after the first, which also traces and compiles) and the projected time; then
the peak resident memory (RSS) of the notebook's kernel and the peak of TensorFlow's own tensors
(on a GPU, its peak GPU memory; on a CPU, the peak of the BFC allocator that the dry run switches on).
Checkpoints and outputs go to the smoke-mode temporary folders, never to the full run's. Each ``fit``
also gets the FLOP count of one step (:func:`step_flops`), from which :func:`expected_time` guesses
the time on a Colab T4 (:func:`t4_guess`).

The projection assumes the full run's steps cost what the measured ones did: it leaves out
evaluation, sampling and checkpoint callbacks that fire between epochs, and the first pass through
a cache. The mock data is random, so the figures say nothing about what the model learns.
On a CPU the tensor peak estimates the GPU memory a GPU run needs: the same weights, optimizer slots,
gradients and activations at the same batch size are allocated there. It overestimates by tf.data's
buffers (host memory on a GPU run) and underestimates by the CUDA context and cuDNN/XLA workspaces
(a few hundred MB); mixed precision roughly halves the activations it counts.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["install", "record", "finish", "run_notebook", "report", "save", "expected_time", "step_flops",
           "t4_guess", "main"]

LOG_VAR = "HOIG_DRYRUN_LOG"
#: The measured figures each notebook prints before its training (``--save`` updates them).
FIGURES = Path(__file__).with_name("full_runs.json")
ROOT = Path(__file__).resolve().parent.parent
#: Steps a dry run takes of every training loop (the first one traces and compiles).
STEPS = 3
#: NVIDIA's float32 peak for the Colab T4, and our guess of the share of it a training step reaches.
T4_FLOPS, T4_SHARE = 8.1e12, 1 / 3


def record(label: str, planned: int | None, step_seconds, **extra) -> None:
    """Append one loop's figures to the dry run's log (a JSON line in ``$HOIG_DRYRUN_LOG``)."""
    path = os.environ.get(LOG_VAR)
    if not path:
        return
    entry = dict(label=label, planned=planned, step_seconds=[float(s) for s in step_seconds], **extra)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _steps_per_epoch(x, batch_size):
    """Batches in one pass over ``x`` (a tf.data.Dataset or an array), or None when unknown."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        n = int(x.cardinality())
        return n if n > 0 else None
    first = x[0] if isinstance(x, (tuple, list)) else next(iter(x.values())) if isinstance(x, dict) else x
    return math.ceil(len(first) / (batch_size or 32)) if hasattr(first, "__len__") else None


def install() -> None:
    """Make ``keras.Model.fit`` run one epoch of :data:`STEPS` steps and record its times and the
    steps the full call would have taken. Called in the notebook's kernel by :func:`run_notebook`."""
    import keras

    original = keras.Model.fit
    if getattr(original, "_dry_run", False):
        return
    signature = inspect.signature(original)

    def fit(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        per_epoch = a["steps_per_epoch"] or _steps_per_epoch(a["x"], a["batch_size"])
        epochs = max(int(a["epochs"]) - int(a["initial_epoch"]), 0)
        planned = epochs * per_epoch if per_epoch else None
        times = []

        class Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                times.append(time.perf_counter())

            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter())

        # callbacks see one batch per call of the train function, which runs `k` steps
        k = max(int(getattr(self, "steps_per_execution", 1) or 1), 1)
        steps = int(os.environ.get("HOIG_DRYRUN_STEPS", STEPS))
        # at least `steps` calls (over several epochs when an epoch is shorter), at most the full fit's
        calls = min(steps * k, per_epoch or steps * k)
        a["epochs"] = int(a["initial_epoch"]) + min(epochs, math.ceil(steps * k / calls))
        a["steps_per_epoch"] = calls
        if a["validation_data"] is not None:
            a["validation_steps"] = 1
        callbacks = list(a["callbacks"] or [])
        a["callbacks"] = [Timer()] + callbacks
        flops = step_flops(self, a["x"], a["batch_size"])
        history = original(*bound.args, **bound.kwargs)
        record(f"{type(self).__name__}.fit", planned, [(t1 - t0) / k for t0, t1 in zip(times, times[1:])],
               batch=_batch_of(a["x"], a["batch_size"]), flops=flops,
               early_stopping=any(isinstance(c, keras.callbacks.EarlyStopping) for c in callbacks))
        return history

    fit._dry_run = True
    keras.Model.fit = fit


def step_flops(model, x, batch_size=None):
    """Floating-point operations of one ``model.train_step`` on the first batch of ``x``: the sum of
    TensorFlow's registered counts (the ones its profiler uses: convolutions, matrix products, their
    gradients, element-wise ops) over the ops of the traced step that its outputs and updates need
    (TensorFlow prunes the rest, such as gradients nobody applies). None where it cannot be traced."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    try:
        batch = next(iter(x)) if isinstance(x, tf.data.Dataset) else tf.nest.map_structure(
            lambda v: v[:batch_size or 32], x)
        graph = tf.function(model.train_step).get_concrete_function(batch).graph
    except Exception:  # noqa: BLE001 - a step that only traces inside fit gets no count
        return None
    live, stack = set(), [t.op for t in graph.outputs] + list(graph.control_outputs)
    while stack:
        op = stack.pop()
        if op not in live:
            live.add(op)
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    total = 0
    for op in live:
        try:
            total += ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
        except ValueError:  # a shape unknown while tracing: not counted
            pass
    return int(total) or None


def _batch_of(x, batch_size):
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        spec = tf.nest.flatten(x.element_spec)[0]
        return spec.shape[0] if spec.shape.rank else None
    return batch_size or 32


def finish() -> None:
    """Record the kernel's peak resident memory and TensorFlow's peak tensor memory: on a GPU its peak
    GPU memory, on a CPU that of the CPU allocator (a BFC allocator when ``TF_CPU_ALLOCATOR_USE_BFC``)."""
    import resource

    import tensorflow as tf

    gpu = tensors = None
    if tf.config.list_physical_devices("GPU"):
        gpu = tensors = tf.config.experimental.get_memory_info("GPU:0")["peak"]
    else:
        try:
            tensors = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        except ValueError:  # the default CPU allocator keeps no statistics
            pass
    record("peak memory", None, [], rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           gpu=gpu, tensors=tensors)


def _peak_rss(client):
    """The kernel process's peak resident memory so far (Linux ``VmHWM``), or None."""
    try:
        status = Path(f"/proc/{client.km.provisioner.process.pid}/status").read_text()
    except (AttributeError, OSError):
        return None
    return next((int(ln.split()[1]) * 1024 for ln in status.splitlines() if ln.startswith("VmHWM")), None)


def run_notebook(path, timeout: int = 3600) -> dict:
    """Dry-run one notebook in a fresh kernel; return ``dict(notebook, seconds, loops, rss, gpu,
    error)``, where ``loops`` holds one dict per training loop (label, planned, step_seconds, batch)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("from common import dryrun as _dry\n_dry.install()"))
    nb.cells.append(nbformat.v4.new_code_cell("_dry.finish()"))
    log = Path(tempfile.mkdtemp(prefix="hoig_dryrun_")) / "log.jsonl"
    saved = {k: os.environ.get(k) for k in ("HOIG_DRYRUN", "MPLBACKEND", "TF_CPU_ALLOCATOR_USE_BFC", LOG_VAR)}
    os.environ.update(HOIG_DRYRUN="1", MPLBACKEND="Agg", TF_CPU_ALLOCATOR_USE_BFC="true", **{LOG_VAR: str(log)})
    start, error, peak = time.perf_counter(), None, dict(hwm=0, growth=0, cell=None)

    def watch(cell, cell_index, **_):  # the cell that raised the kernel's peak RSS the most
        hwm = _peak_rss(client) or 0
        if 0 < cell_index < len(nb.cells) - 1 and hwm - peak["hwm"] > peak["growth"] and cell.source.strip():
            peak.update(growth=hwm - peak["hwm"],   # numbered as in the notebook (without the dry-run cell)
                        cell=f"cell {cell_index - 1} ({cell.source.strip().splitlines()[0][:60]})")
        peak["hwm"] = max(peak["hwm"], hwm)

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", on_cell_executed=watch,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(exc).strip().splitlines()[-1])  # no terminal colours
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    memory = [e for e in entries if e["label"] == "peak memory"]
    return dict(notebook=str(path), seconds=time.perf_counter() - start, error=error, peak_cell=peak["cell"],
                loops=[e for e in entries if e["label"] != "peak memory"],
                **{k: memory[0].get(k) if memory else None for k in ("rss", "gpu", "tensors")})


def _duration(seconds) -> str:
    if seconds is None:
        return "?"
    if seconds >= 2 * 86400:
        return f"{seconds / 3600:.0f} h ({seconds / 86400:.0f} days)"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def step_time(loop: dict):
    """Seconds per step of a recorded loop: the median of its steps after the first (or the first)."""
    s = loop["step_seconds"]
    return statistics.median(s[1:]) if len(s) > 1 else (s[0] if s else None)


def projected_seconds(result: dict):
    """The full run's training time projected from the dry run: sum of planned steps x s/step."""
    total = 0.0
    for loop in result["loops"]:
        t = step_time(loop)
        if t is None or loop["planned"] is None:
            return None
        total += t * loop["planned"]
    return total


def report(result: dict, out=sys.stdout) -> None:
    """Print one notebook's dry-run figures as a small table."""
    gb = lambda b: "?" if b is None else f"{b / 1024 ** 3:.2f} GB"  # noqa: E731
    print(f"\n{result['notebook']}: dry run {result['seconds']:.0f} s, peak RSS {gb(result['rss'])}"
          + (f", raised most by {result['peak_cell']}" if result.get("peak_cell") else "")
          + (f", peak GPU memory {gb(result['gpu'])}" if result["gpu"] else
             f", tensor peak {gb(result['tensors'])}" if result.get("tensors") is not None else ""), file=out)
    print(f"  {'loop':28s} {'batch':>6s} {'full steps':>11s} {'s/step':>8s} {'projected':>10s}", file=out)
    for loop in result["loops"]:
        t = step_time(loop)
        proj = None if t is None or loop["planned"] is None else t * loop["planned"]
        print(f"  {loop['label']:28s} {str(loop.get('batch') or '-'):>6s} {loop['planned'] or '?':>11} "
              f"{'?' if t is None else f'{t:.3f}':>8s} {_duration(proj):>10s}", file=out)
    print(f"  projected training time of the full run on this machine: "
          f"{_duration(projected_seconds(result))}", file=out)
    if result["error"]:
        print(f"  FAILED: {result['error']}", file=out)


def _machine() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               "CPU") if Path("/proc/cpuinfo").exists() else "CPU"
    return f"{os.cpu_count()} cores of an {cpu}"


def save(results, path: Path = FIGURES, flops_only: bool = False) -> None:
    """Merge successful dry runs into the figures file, one entry per notebook and machine; with
    ``flops_only``, only their FLOP counts into the entries already there (timings kept)."""
    figures = json.loads(path.read_text()) if path.exists() else {}
    machine = _machine()
    for r in results:
        if r["error"]:
            continue
        name = Path(r["notebook"]).resolve().relative_to(ROOT).as_posix()
        if flops_only:
            for saved in figures.get(name, {}).values():
                if [x["label"] for x in saved["loops"]] == [x["label"] for x in r["loops"]]:
                    for x, new in zip(saved["loops"], r["loops"]):
                        x["flops"] = new.get("flops")
            continue
        figures.setdefault(name, {})[machine] = dict(
            date=time.strftime("%Y-%m-%d"), rss=r["rss"], gpu=r["gpu"], tensors=r.get("tensors"),
            peak_cell=r.get("peak_cell"),
            loops=[dict(label=x["label"], planned=x["planned"], batch=x.get("batch"),
                        early_stopping=x.get("early_stopping", False),
                        s_per_step=round(step_time(x), 4), flops=x.get("flops")) for x in r["loops"]])
    path.write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")


def t4_guess(loops) -> float | None:
    """Our guess of a loop list's training time on a Colab T4 in float32: the FLOPs of every planned
    step at :data:`T4_SHARE` of the T4's peak. None when a loop has no FLOP count."""
    loops = [x for x in loops if x["planned"]]
    if not loops or any(not x.get("flops") for x in loops):
        return None
    return sum(x["planned"] * x["flops"] for x in loops) / (T4_FLOPS * T4_SHARE)


def expected_time(notebook: str, path: Path = FIGURES) -> dict:
    """Print how long the full run of ``notebook`` (e.g. ``"Chapter03/ch03_dcgan.ipynb"``) takes and
    how much memory it needs, as measured by its full-size dry run on each machine it was run on:
    steps x the seconds per step measured at full size. Returns the figures."""
    figures = json.loads(path.read_text()).get(notebook) if path.exists() else None
    if not figures:
        print(f"no dry-run figures for {notebook}: run python -m common.dryrun {notebook} --save")
        return {}
    for machine, f in figures.items():
        loops = f["loops"]
        total = sum(x["planned"] * x["s_per_step"] for x in loops if x["planned"])
        steps = sum(x["planned"] or 0 for x in loops)
        unknown = sum(x["planned"] is None for x in loops)
        print(f"Full run, measured at full size by `python -m common.dryrun` ({f['date']}) on {machine}:\n"
              + (f"  {steps:,} training steps in {len(loops)} loop(s): about {_duration(total)} of training"
                 if loops else "  no training loop")
              + (f", plus {unknown} loop(s) of unknown length" if unknown else "")
              + (" (less where early stopping ends a loop sooner)" if any(x.get("early_stopping") for x in loops)
                 else "")
              + f"\n  peak host memory {f['rss'] / 1024 ** 3:.1f} GB (a free Colab runtime has 12.7 GB)"
              + (f", peak GPU memory {f['gpu'] / 1024 ** 3:.1f} GB" if f.get("gpu") else
                 f"\n  TensorFlow's tensors peaked at {f['tensors'] / 1024 ** 3:.1f} GB, our estimate of the GPU"
                 " memory it needs (a free Colab T4 has 15 GB)" if f.get("tensors") is not None else ""))
    if not any(f.get("gpu") is not None for f in figures.values()):
        t4 = next((t for t in map(t4_guess, (f["loops"] for f in figures.values())) if t), None)
        if t4:
            print(f"  On a Colab T4, our guess: about {_duration(t4)} in float32 (TensorFlow's count of the "
                  f"steps' FLOPs at a third of the T4's {T4_FLOPS / 1e12:.1f} TFLOPS peak)")
        print("  No GPU has run it yet: on one, `python -m common.dryrun", notebook, "--save` adds its figures.")
    return figures


def table(path: Path = FIGURES) -> str:
    """The saved figures as a Markdown table (the README's), one row per notebook and machine."""
    rows = ["| notebook | machine | training steps | s/step | training time | T4 guess | peak RAM | tensor peak |",
            "|---|---|--:|--:|--:|--:|--:|--:|"]
    for name, machines in sorted(json.loads(path.read_text()).items()):
        for machine, f in machines.items():
            loops = [x for x in f["loops"] if x["planned"]]
            per_step = sorted({f"{x['s_per_step']:.3g}" for x in loops}, key=float)
            span = "-" if not per_step else per_step[0] if len(per_step) == 1 else f"{per_step[0]}-{per_step[-1]}"
            total = sum(x["planned"] * x["s_per_step"] for x in loops)
            rows.append(f"| {name} | {machine} | {sum(x['planned'] for x in loops):,} | {span} | "
                        f"{_duration(total) if loops else '-'} | "
                        f"{_duration(t4_guess(loops)) if t4_guess(loops) else '-' if not loops else '?'} | "
                        f"{f['rss'] / 1024 ** 3:.1f} GB | "
                        + (f"{f['tensors'] / 1024 ** 3:.1f} GB |" if f.get("tensors") is not None else "? |"))
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--table", action="store_true", help="print the saved figures as Markdown")
    parser.add_argument("--save", action="store_true", help=f"merge the figures into {FIGURES.name}, "
                        "which the notebooks print before training")
    parser.add_argument("--flops-only", action="store_true", help="with --save: add only the FLOP counts "
                        "(one timed step per loop; the saved timings stay)")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
    results = []
    if args.flops_only:
        os.environ["HOIG_DRYRUN_STEPS"] = "1"
    for nb in args.notebooks:
        results.append(run_notebook(nb, timeout=args.timeout))
        report(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.save:
        save(results, flops_only=args.flops_only)
    return int(any(r["error"] for r in results))


if __name__ == "__main__":
    sys.exit(main())
