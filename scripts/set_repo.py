"""Point a fork's notebooks at the fork: rewrite every "Open in Colab" badge, every Colab install
cell, the README's links and `common.config.REPO` from the current GitHub repository to OWNER/NAME.

    python scripts/set_repo.py OWNER/NAME     # e.g. python scripts/set_repo.py alice/hoig-notebooks

Run it once after forking (and commit the result): the badges then open the fork's notebooks on
Colab, and their install cells install the fork's `common` package.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLUG = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
CONFIG = ROOT / "common" / "config.py"


def current_repo() -> str:
    return re.search(r'^REPO = "([^"]+)"', CONFIG.read_text(encoding="utf-8"), re.M).group(1)


def files() -> list[Path]:
    return [ROOT / "README.md", CONFIG, *sorted(ROOT.glob("docs/*.md")),
            *sorted(ROOT.glob("Chapter[0-9][0-9]/*.ipynb"))]


def set_repo(new: str) -> list[Path]:
    """Replace the current OWNER/NAME by `new` wherever it appears; returns the files changed."""
    if not SLUG.fullmatch(new):
        raise ValueError(f"expected OWNER/NAME as on GitHub, got {new!r}")
    old = current_repo()
    changed = []
    for path in files():
        text = path.read_text(encoding="utf-8")
        updated = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w.-])", new, text)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        changed = set_repo(sys.argv[1])
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"now {sys.argv[1]}: rewrote {len(changed)} files" if changed else "nothing to change")
