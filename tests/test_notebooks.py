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
    assert 'find_spec("common") is None' in install and "raise SystemExit(" in install
    assert "face_recognition " not in install, "face_recognition is never imported: do not install it"


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


# ------------------------------------------------------------------ the reader changes a model cell


def test_editing_a_model_cell_changes_the_model_that_trains(tmp_path):
    """Execute ch03_dcgan with one extra layer typed into its generator cell: the generator the
    notebook trains must carry that layer and have been updated by the optimizer. (Had the notebook
    imported its generator from `common`, the edit would change nothing.)"""
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "Chapter03/ch03_dcgan.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "def build_dcgan_generator" in c.source)
    last_conv = '    x = keras.layers.Conv2D(width // 4, 3, padding="same")(x)\n'
    assert last_conv in cell.source
    cell.source = cell.source.replace(
        last_conv, last_conv + '    x = keras.layers.Conv2D(width // 4, 3, padding="same", name="reader_added")(x)\n')
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\n"
        "added = gan.generator.get_layer('reader_added')\n"
        "print('EDITED' + json.dumps(dict(params=int(gan.generator.count_params()),\n"
        "    kernel_shape=list(added.kernel.shape), g_updates=int(gan.g_optimizer.iterations),\n"
        "    width=int(HP.g_width))))"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    result = json.loads(out.split("EDITED", 1)[1])
    c = result["width"] // 4
    assert result["kernel_shape"] == [3, 3, c, c]
    assert result["g_updates"] > 0, "the edited generator was not trained"
    # the edited generator is the one that trained: the unedited count plus the added convolution
    import keras
    from common.ch03 import build_dcgan_generator
    plain = build_dcgan_generator(z_dim=100, width=result["width"]).count_params()
    assert result["params"] == plain + 9 * c * c + c


def test_the_review_table_names_the_notebook_that_defines_each_technique():
    """Chapter 10's table of techniques: each `common.chNN.name` must be exported by the notebook
    the table names (so the table moves when a definition moves)."""
    import ast
    from common import export

    cells = _load(ROOT / "Chapter10/ch10_review.ipynb")["cells"]
    source = next("".join(c["source"]) for c in cells if "TECHNIQUES = [" in "".join(c["source"]))
    table = next(ast.literal_eval(n.value) for n in ast.parse(source).body
                 if isinstance(n, ast.Assign) and n.targets[0].id == "TECHNIQUES")
    assert len(table) >= 30
    for group, technique, notebook, name in table:
        if not name.startswith("common."):
            continue
        module, attr = name.split(".")[1], name.split(".")[-1]
        assert module == "ch" + notebook[7:9], f"{technique}: {name} is not Chapter {notebook[7:9]}'s module"
        defined = set()
        for _, src in export.exported_cells(ROOT / notebook):
            defined |= {n.name for n in ast.parse(src).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert attr in defined, f"{technique}: {notebook} does not define {attr}"


def test_install_cell_stops_with_one_sentence_when_the_package_did_not_install():
    """On Colab, a failed install (no network, a wrong repository) must stop the install cell with
    one sentence, not at a later ModuleNotFoundError."""
    import subprocess
    import sys

    cell = "".join(_load(NOTEBOOKS[0])["cells"][1]["source"])
    cell = "\n".join("    pass" if line.strip().startswith("%pip") else line for line in cell.splitlines())
    fake_colab = ("import sys, types, importlib.util\n"
                  "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                  "importlib.util.find_spec = lambda name, *args: None   # as if pip had failed\n")
    proc = subprocess.run([sys.executable, "-c", fake_colab + cell], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("The companion package did not install")
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_set_repo_points_badges_install_cells_readme_and_config_at_a_fork(tmp_path):
    import shutil
    import subprocess
    import sys

    for folder in ("Chapter01", "Chapter09", "docs", "scripts"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "common").mkdir()
    shutil.copy(ROOT / "common/config.py", tmp_path / "common/config.py")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")

    def run(*args):
        return subprocess.run([sys.executable, str(tmp_path / "scripts/set_repo.py"), *args],
                              capture_output=True, text=True, timeout=60)

    assert run("not a repository").returncode != 0
    assert run("alice/forked-notebooks").returncode == 0
    texts = {p: p.read_text(encoding="utf-8") for p in [tmp_path / "README.md", tmp_path / "common/config.py",
                                                         *tmp_path.glob("Chapter0*/*.ipynb")]}
    assert all(REPO not in t for t in texts.values())
    assert 'REPO = "alice/forked-notebooks"' in texts[tmp_path / "common/config.py"]
    for path in tmp_path.glob("Chapter0*/*.ipynb"):
        cells = _load(path)["cells"]
        rel = path.relative_to(tmp_path).as_posix()
        assert f"colab.research.google.com/github/alice/forked-notebooks/blob/main/{rel}" in "".join(cells[0]["source"])
        assert "git+https://github.com/alice/forked-notebooks" in "".join(cells[1]["source"])
    assert "colab.research.google.com/github/alice/forked-notebooks/blob/main/Chapter10/ch10_review.ipynb" \
        in texts[tmp_path / "README.md"]
