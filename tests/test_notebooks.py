"""Notebook hygiene: outputs stripped, a correct "Open in Colab" link, the Colab install cell,
and the parameters declared through common.config. (Executing the notebooks is done by
``pytest --nbmake`` in scripts/test.sh.)"""

import json
from pathlib import Path

import pytest

from common.config import REPO

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in ROOT.glob("Chapter*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebooks found"


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_are_stripped(path):
    for cell in _load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), "stored outputs: strip them before committing"
            assert cell.get("execution_count") is None, "stored execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_link_and_install_cell(path):
    cells = _load(path)["cells"]
    rel = path.relative_to(ROOT).as_posix()
    link = f"https://colab.research.google.com/github/{REPO}/blob/main/{rel}"
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and link in first, f"first cell must link to {link}"
    install = "".join(cells[1]["source"])
    assert cells[1]["cell_type"] == "code"
    assert '"google.colab" in sys.modules' in install and f"github.com/{REPO}" in install


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_come_from_config(path):
    source = "\n".join("".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "code")
    assert "config.hparams(" in source, "declare hyperparameters once with common.config.hparams"
    assert "is_smoke()" not in source and "HOIG_SMOKE" not in source, "notebooks must not test the mode"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_readme_lists_the_notebook_with_its_colab_link(path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rel = path.relative_to(ROOT).as_posix()
    assert f"({rel})" in readme, f"README's chapter table does not link {rel}"
    assert f"https://colab.research.google.com/github/{REPO}/blob/main/{rel}" in readme
