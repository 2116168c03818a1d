"""What a reader's full run needs from the notebooks, checked in smoke mode: random augmentation
that is drawn anew on every pass over the data, pipelines that do not cache more than fits in a free
Colab runtime's memory, and a smoke run that never reads or writes a full run's files."""
import ast
import json
import os
import re
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from common import data

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(ROOT.glob("Chapter[0-9][0-9]/*.ipynb"))
FULL_RUN_FOLDERS = ("checkpoints/", "outputs/")


def _code_cells(path: Path) -> list[str]:
    """The code cells of a notebook, IPython magics (the install cell's %pip) commented out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["\n".join("#" + line if re.match(r"\s*[%!][A-Za-z]", line) else line
                      for line in "".join(c["source"]).splitlines())
            for c in cells if c["cell_type"] == "code"]


def _hparams_call(path: Path):
    """The ``config.hparams(full=..., smoke=...)`` call of a notebook (every notebook has one)."""
    for source in _code_cells(path):
        if "config.hparams(" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "hparams":
                return {k.arg: k.value for k in node.keywords}
    raise AssertionError(f"{path.name} has no config.hparams(...) call")


def _dict_items(node) -> dict:
    assert isinstance(node, ast.Call) and node.func.id == "dict", ast.unparse(node)
    return {k.arg: k.value for k in node.keywords}


def _full_run_path(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
            node.value.startswith(FULL_RUN_FOLDERS):
        return node.value
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_smoke_mode_never_reads_or_writes_a_full_runs_files(path):
    """Every full-run path (under checkpoints/ or outputs/) is replaced in smoke mode by one that is
    not: before this, the suite wrote 4-filter weights where a reader's full run then tried to resume
    (and PixelCNN's smoke run restored a full run's backup). Every such path is ignored by git."""
    call = _hparams_call(path)
    full, smoke = _dict_items(call["full"]), _dict_items(call.get("smoke", ast.parse("dict()").body[0].value))
    for key, value in full.items():
        target = _full_run_path(value)
        if target is None:
            continue
        assert key in smoke, f"{path.name}: smoke mode uses the full run's {key}={target!r}"
        assert _full_run_path(smoke[key]) is None and "checkpoints/" not in ast.unparse(smoke[key]), \
            f"{path.name}: smoke mode's {key} is a full-run folder: {ast.unparse(smoke[key])}"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path.parent / target)], cwd=ROOT)
        assert ignored.returncode == 0, f"{path.parent.name}/{target} is not ignored by git"
    for source in _code_cells(path):
        if "config.hparams(" in source:
            continue
        literals = [n.value for n in ast.walk(ast.parse(source)) if _full_run_path(n)]
        assert not literals, f"{path.name} names full-run paths outside its hyperparameters: {literals}"


def _run_until(path: Path, name: str) -> dict:
    """Execute a notebook's code cells (smoke mode, its own folder) until one defines ``name``."""
    namespace = {"__name__": "__notebook__", "display": lambda *a, **k: None}
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for source in _code_cells(path):
            exec(compile(source, str(path), "exec"), namespace)
            if name in namespace:
                return namespace
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt
        plt.close("all")
    raise AssertionError(f"{path.name} never defines {name}")


AUGMENTED = ["Chapter04/ch04_pix2pix.ipynb", "Chapter04/ch04_bicyclegan.ipynb",
             "Chapter04/ch04_cyclegan_facades.ipynb", "Chapter04/ch04_cyclegan_horse2zebra.ipynb"]


@pytest.mark.parametrize("notebook", AUGMENTED, ids=lambda p: Path(p).stem)
def test_random_augmentation_is_drawn_anew_on_every_pass(notebook, monkeypatch):
    """64 training images taken from the notebook's own ``train_ds`` (several passes over the
    smoke data: 6 pairs per split, 16 images per domain) are nearly all different when the jitter is
    drawn every pass; a cache placed after the jitter replays the first pass, so at most 16 of them
    could differ. Each input of the pipeline (A and B) is counted on its own: CycleGAN zips two
    independently shuffled streams whose combinations differ even when each stream is frozen."""
    monkeypatch.setenv("HOIG_SMOKE", "1")
    ns = _run_until(ROOT / notebook, "train_ds")
    examples = list(ns["train_ds"].unbatch().take(64).as_numpy_iterator())
    assert len(examples) == 64
    for stream in range(len(examples[0])):
        distinct = {np.asarray(ex[stream]).tobytes() for ex in examples}
        assert len(distinct) > 32, (f"{notebook}: stream {stream} repeats itself ({len(distinct)} "
                                    "distinct of 64): is the jittered data cached?")


def test_cache_only_what_fits_in_a_colab_runtime():
    """The caching decisions at the real datasets' sizes (uint8 bytes): facades' 400 pairs and
    CelebA at 64x64 (162,770 faces) fit under CACHE_BYTES; edges2shoes' 49,825 pairs and CelebA at
    128x128 do not (19.6 GB and 8 GB), so they are decoded every pass instead."""
    pair = 256 * 512 * 3
    assert data._cacheable(None, data.PAIRED_ARCHIVES["facades"]["counts"]["train"], pair)
    assert not data._cacheable(None, data.PAIRED_ARCHIVES["edges2shoes"]["counts"]["train"], pair)
    assert data._cacheable(None, 162_770, 64 * 64 * 3)
    assert not data._cacheable(None, 162_770, 128 * 128 * 3)
    assert not data._cacheable(None, -2, 3)  # unknown size: never cached blindly
    assert data._cacheable(True, 10 ** 9, 10 ** 9) and not data._cacheable(False, 1, 1)
