"""What a user reads says what things are, not where they came from: no words from the
project's history ("the seed", issue or session numbers, branch names) in any command's
help, the README and docs, the template product, what `apiphant new` makes and prints, or any
file the deploy renders; and the deploy's files name `apiphant serve`, not apiphant 0.2's
`apiphant PRODUCT HOST:PORT` (which keeps working, and which the docs show as 0.2's form).

The rendered files are read from tests/golden/, which tests/test_golden.py holds equal to
`fab render` of myproduct and of the multi-host example, and to their dry runs.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import MYPRODUCT, REPO
from tests.test_readme import INTERNAL

GOLDEN = REPO / "tests" / "golden"
BIN = Path(sys.executable).parent
#: Session words besides INTERNAL's: a work branch's name, like s30-d1.
BRANCH = re.compile(r"\bs[0-9]{2}-[a-z0-9]+\b")
#: apiphant 0.2's serve form, with a product's name or the template's placeholder.
OLD_SERVE = re.compile(r"\bapiphant (?!serve\b|routes\b|new\b|background\b)"
                       r"(?:[a-z_][a-z0-9_]*|\{\{ ?product ?\}\}) \S+:\S+")  # fmt: skip


def _run(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _help() -> dict[str, str]:
    """Every command's help, as a user gets it: apiphant's, test.sh's and fab's."""
    said = {}
    for command in ([], ["serve"], ["routes"], ["new"], ["background"]):
        said[f"apiphant {' '.join(command)} -h"] = _run(
            sys.executable, "-m", "apiphant", *command, "-h")
    said["apiphant-background -h"] = _run(sys.executable, "-m", "apiphant.background", "-h")
    said["test.sh -h"] = _run(sys.executable, "-m", "apiphant.smoke", "-h")
    fab = str(BIN / "fab")
    listing = _run(fab, "--list", cwd=MYPRODUCT)
    said["fab --list"] = listing
    tasks = re.findall(r"^  ([a-z-]+) ", listing, re.M)
    assert len(tasks) >= 8, listing
    for task in tasks:
        said[f"fab -h {task}"] = _run(fab, "-h", task, cwd=MYPRODUCT)
    return said


def _text_files(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder.parent)): path.read_text()
            for path in sorted(folder.rglob("*")) if path.is_file()
            and "__pycache__" not in path.parts and path.suffix != ".pyc"}  # fmt: skip


@pytest.fixture(scope="module")
def new_product(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """What `apiphant new shop` prints, and the files it writes."""
    parent = tmp_path_factory.mktemp("new")
    printed = _run(sys.executable, "-m", "apiphant", "new", "shop", str(parent))
    return printed, _text_files(parent / "shop")


def _offending(texts: dict[str, str], pattern: re.Pattern, skip=None) -> list[str]:
    return [f"{where}:{n}: {line.strip()}" for where, text in texts.items()
            for n, line in enumerate(text.splitlines(), 1)
            if pattern.search(line) and not (skip and skip.search(line))]  # fmt: skip


def test_no_history_words_in_what_users_read(new_product):
    printed, files = new_product
    texts = {
        **_help(),
        "apiphant new shop": printed,
        **files,
        **_text_files(MYPRODUCT),
        **{path.name: path.read_text() for path in sorted(GOLDEN.glob("*.txt"))},
        **{name: (REPO / name).read_text() for name in ("README.md", "RELIABILITY.md")},
        **{f"docs/{p.name}": p.read_text() for p in sorted((REPO / "docs").glob("*.md"))},
    }
    assert _offending(texts, INTERNAL) == []
    assert _offending(texts, BRANCH) == []


def test_the_deploys_files_name_apiphant_serve(new_product):
    printed, files = new_product
    texts = {
        "apiphant new shop": printed,
        **files,
        **_text_files(MYPRODUCT),
        **{path.name: path.read_text() for path in sorted(GOLDEN.glob("render-*.txt"))},
    }
    assert _offending(texts, OLD_SERVE) == []
