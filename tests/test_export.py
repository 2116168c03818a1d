"""The notebooks are the source of `common/chNN.py`: the export command, and what keeps it honest.

- `common/` must equal what the notebooks export (a stale or hand-edited generated file fails);
- no notebook re-defines what another notebook exports, or imports from `common` what it defines;
- hand-written `common/` stays small;
- the exporter itself: markers, order inside a chapter, imports, errors.
"""
import ast
import json
import re
from pathlib import Path

import pytest

from common import export

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(ROOT.glob("Chapter[0-9][0-9]/*.ipynb"))
# every module of common/ was hand-written before the notebooks became the source (7,922 lines);
# the issue that moved the lessons into the notebooks allows a third of that to stay hand-written
HAND_WRITTEN_BUDGET = 7_922 // 3
TOOL_BUDGET = 400


def _code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for c in cells:
        if c["cell_type"] == "code":
            # IPython magics and shell lines become `pass`, keeping the block structure
            lines += [export.MAGIC.sub(r"\1pass", ln) for ln in "".join(c["source"]).splitlines()]
    return "\n".join(lines)


def _top_level_definitions(source: str) -> set[str]:
    return {n.name for n in ast.parse(source).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _exports_by_notebook() -> dict[Path, set[str]]:
    """The public names (no leading underscore) each notebook's exported cells define."""
    out = {}
    for nb in NOTEBOOKS:
        names = set()
        for _, src in export.exported_cells(nb):
            names |= {n for n in _top_level_definitions(src) if not n.startswith("_")}
        out[nb] = names
    return out


# ------------------------------------------------------------------ the repository


def test_common_matches_what_the_notebooks_export():
    problems = export.check(ROOT)
    assert not problems, "\n\n".join(problems)


def test_every_chapter_module_is_generated_from_the_notebooks():
    for module in sorted((ROOT / "common").glob("ch[0-9][0-9].py")):
        assert module.read_text(encoding="utf-8").startswith(export.GENERATED), \
            f"{module.name} is hand-written; its chapter's notebooks should export it"


def test_generated_modules_import_cleanly_and_define_what_they_list():
    import importlib
    for module in sorted((ROOT / "common").glob("ch[0-9][0-9].py")):
        mod = importlib.import_module(f"common.{module.stem}")
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"common.{module.stem} lists {missing} but does not define them"
        undocumented = [n for n in mod.__all__ if callable(getattr(mod, n)) and not getattr(mod, n).__doc__]
        assert not undocumented, f"common.{module.stem}: public names without a docstring: {undocumented}"


def test_no_notebook_redefines_what_another_notebook_exports():
    exports = _exports_by_notebook()
    for nb in NOTEBOOKS:
        defined = _top_level_definitions(_code(nb))
        for other, names in exports.items():
            if other != nb:
                again = sorted(defined & names)
                assert not again, (f"{nb.relative_to(ROOT)} re-defines {again}, exported by "
                                   f"{other.relative_to(ROOT)}: import them from common instead")


def test_no_notebook_imports_from_common_what_it_defines_itself():
    exports = _exports_by_notebook()
    for nb in NOTEBOOKS:
        tree = ast.parse(_code(nb))
        imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and (n.module or "").startswith("common") for a in n.names}
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and re.fullmatch(r"ch\d\d", n.value.id)}
        own = exports[nb]
        assert not (imported | used) & own, (f"{nb.relative_to(ROOT)} takes {sorted((imported | used) & own)} "
                                             "from common although it defines them: use its own cells")


def test_hand_written_common_stays_small():
    """The hand-written library the notebooks import (config, data, viz, widgets, callbacks) stays
    within the budget; the command-line tools (``python -m common.<tool>``: export, bench, demo, the
    ones later issues ask for) teach nothing and are held to a size each instead."""
    sizes, tools = {}, {}
    for p in sorted((ROOT / "common").glob("*.py")):
        text = p.read_text(encoding="utf-8")
        if not text.startswith(export.GENERATED):
            (tools if 'if __name__ == "__main__":' in text else sizes)[p.name] = len(text.splitlines())
    total = sum(sizes.values())
    print("hand-written library:", total, "lines", sizes, "tools:", tools)
    assert total <= HAND_WRITTEN_BUDGET, f"hand-written common/ has {total} lines (budget {HAND_WRITTEN_BUDGET}): {sizes}"
    assert {"export.py", "bench.py", "demo.py"} <= set(tools), tools
    big = {name: n for name, n in tools.items() if n > TOOL_BUDGET}
    assert not big, f"command-line tools over {TOOL_BUDGET} lines: {big}"


# ------------------------------------------------------------------ the exporter


def _notebook(path: Path, *cells: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                     "outputs": [], "source": src} for i, src in enumerate(cells)],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "common").mkdir()
    # "b_first" comes first by name but imports what "z_second" defines, so it must follow it
    _notebook(tmp_path / "Chapter02/ch02_b_first.ipynb",
              "#| export common.ch02\nimport numpy as np\nfrom common.ch02 import double\nfrom common.ch01 import one",
              "#| export common.ch02\ndef quadruple(x):\n    \"\"\"4x.\"\"\"\n    return double(double(x))",
              "print(quadruple(np.ones(2)))")
    _notebook(tmp_path / "Chapter02/ch02_z_second.ipynb",
              "#| export common.ch02\nimport numpy as np\n\n\ndef double(x):\n    \"\"\"2x.\"\"\"\n    return 2 * x",
              "# not exported\nSCRATCH = 1")
    _notebook(tmp_path / "Chapter01/ch01_a.ipynb", "#| export common.ch01\ndef one():\n    \"\"\"1.\"\"\"\n    return 1")
    return tmp_path


def test_export_orders_a_chapter_by_its_imports_and_hoists_imports(repo):
    text = export.generate(repo)["ch02.py"]
    assert text.startswith(export.GENERATED)
    assert text.index("def double") < text.index("def quadruple")
    assert text.count("import numpy as np") == 1                  # de-duplicated
    assert "from common.ch02" not in text                          # the module never imports itself
    assert "from common.ch01 import one" in text
    assert "SCRATCH" not in text and "print(" not in text          # unmarked cells stay in the notebook
    assert "Chapter02/ch02_z_second.ipynb" in text and "Chapter02/ch02_b_first.ipynb" in text
    namespace = {}
    exec(compile(text.replace("from common.ch01 import one\n", ""), "ch02.py", "exec"), namespace)
    assert namespace["quadruple"](3) == 12 and namespace["__all__"] == ["double", "quadruple"]


def test_write_is_idempotent_and_check_finds_stale_and_orphaned_files(repo):
    assert sorted(export.write(repo)) == ["ch01.py", "ch02.py"]
    assert export.write(repo) == [] and export.check(repo) == []
    (repo / "common/ch02.py").write_text((repo / "common/ch02.py").read_text() + "# edited by hand\n")
    assert any("ch02.py differs" in p for p in export.check(repo))
    (repo / "common/ch05.py").write_text(export.GENERATED + " from nothing\n")
    assert any("ch05.py is generated but no notebook exports to it" in p for p in export.check(repo))
    export.write(repo)
    assert not (repo / "common/ch05.py").exists() and export.check(repo) == []


def test_write_can_be_limited_to_some_modules(repo):
    assert export.write(repo, ["ch01"]) == ["ch01.py"]
    assert not (repo / "common/ch02.py").exists()


@pytest.mark.parametrize("cell, message", [
    ("#| export common.ch03\ndef f():\n    pass", "may only export to common.ch02"),
    ("#| export common.ch02\n%matplotlib inline\ndef f():\n    pass", "not plain Python"),
    ("#| exports common.ch02\ndef f():\n    pass", "malformed marker"),
])
def test_bad_cells_are_refused_with_the_notebook_and_cell(repo, cell, message):
    _notebook(repo / "Chapter02/ch02_bad.ipynb", cell)
    with pytest.raises(export.ExportError, match=message) as err:
        export.generate(repo)
    assert "ch02_bad.ipynb, cell 0" in str(err.value)


def test_a_name_defined_twice_in_one_module_is_refused(repo):
    _notebook(repo / "Chapter02/ch02_c.ipynb", "#| export common.ch02\ndef double(x):\n    return x")
    with pytest.raises(export.ExportError, match="double"):
        export.generate(repo)


def test_an_import_nobody_in_the_chapter_exports_is_refused(repo):
    _notebook(repo / "Chapter02/ch02_c.ipynb", "#| export common.ch02\nfrom common.ch02 import missing")
    with pytest.raises(export.ExportError, match="missing"):
        export.generate(repo)


def test_the_command_line_checks_and_writes(repo, capsys):
    assert export.main(["--root", str(repo), "--check"]) == 1
    assert export.main(["--root", str(repo)]) == 0
    assert export.main(["--root", str(repo), "--check"]) == 0
    with pytest.raises(SystemExit):
        export.main(["--root", str(repo), "layers"])


def test_independent_notebooks_follow_the_readme_table(repo):
    _notebook(repo / "Chapter01/ch01_b.ipynb", "#| export common.ch01\ndef two():\n    \"\"\"2.\"\"\"\n    return 2")
    assert export.generate(repo)["ch01.py"].index("def one") < export.generate(repo)["ch01.py"].index("def two")
    (repo / "README.md").write_text("| 1 | [B](Chapter01/ch01_b.ipynb) |\n| 1 | [A](Chapter01/ch01_a.ipynb) |\n")
    text = export.generate(repo)["ch01.py"]
    assert text.index("def two") < text.index("def one")
