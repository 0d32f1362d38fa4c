"""What the deploy kit renders and prints, pinned byte for byte: a change to the kit's code
that is meant to keep behaviour (a move, a split, a rename) must leave these files as they are.

``fab render`` of myproduct and of its multi-host example, the files' modes, and both
``fab deploy --dry-run``s; release ids, this machine's paths, the lock holder, byte counts and
the git commit are normalised. After a change that is meant to change them:
``APIPHANT_GOLDEN=write pytest tests/test_golden.py``, and the diff goes in the commit.
"""

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import REPO

GOLDEN = Path(__file__).parent / "golden"
FAB = Path(sys.executable).parent / "fab"
MULTI = "--config=myproduct/deploy.multihost.toml.example"
COMMANDS = {
    "render-myproduct.txt": ["render", "--product=myproduct"],
    "render-multihost.txt": ["render", "--product=myproduct", MULTI],
    "dry-run-myproduct.txt": ["deploy", "--product=myproduct", "--dry-run"],
    "dry-run-multihost.txt": ["deploy", "--product=myproduct", MULTI, "--dry-run"],
}


def normalise(text: str, home: Path) -> str:
    python = re.escape(str(Path(sys.executable).parent))
    for pattern, replacement in (
        (r"[0-9]{14}", "RELEASE"),
        # before CHECKOUT, which holds it: `python` or `python3`, as pip wrote fab's shebang
        (python + r"/python3?\b", "PYTHON"),
        (re.escape(str(REPO)), "CHECKOUT"),
        (re.escape(str(home)), "HOME"),
        (r"/tmp/apiphant-deploy-[A-Za-z0-9_]+", "WORKDIR"),
        (r"/tmp/tmp[A-Za-z0-9_.]+", "TMP"),
        (r"'[^' ]+ since [0-9T:-]+Z \(release RELEASE\)'", "'HOLDER'"),
        (r"\([0-9]+ bytes\)", "(N bytes)"),
        (r"\(commit [0-9a-f]{7,40}[^)]*\)", "(commit COMMIT)"),
    ):
        text = re.sub(pattern, replacement, text)
    return text


def _fab(args: list[str], home: Path) -> str:
    env = {**os.environ, "HOME": str(home), "TMPDIR": "/tmp"}
    env.pop("APIPHANT_SUDO_PASSWORD", None)
    done = subprocess.run([str(FAB), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A HOME with the (empty) secrets file the multi-host example names."""
    home = tmp_path_factory.mktemp("home")
    secrets = home / ".config" / "apiphant" / "myproduct.secrets.env"
    secrets.parent.mkdir(parents=True)
    secrets.touch(mode=0o600)
    return home


def _outputs(home: Path, tmp: Path) -> dict[str, str]:
    found = {name: normalise(_fab(args, home), home) for name, args in COMMANDS.items()}
    out = tmp / "files"
    _fab(["render", "--product=myproduct", MULTI, "--out", str(out)], home)
    found["render-modes.txt"] = "".join(
        f"{path.stat().st_mode & 0o777:o} {path.relative_to(out)}\n"
        for path in sorted(out.rglob("*")) if path.is_file()
    )
    return found


def test_the_kit_renders_and_prints_what_it_did(home: Path, tmp_path: Path) -> None:
    found = _outputs(home, tmp_path)
    if os.environ.get("APIPHANT_GOLDEN") == "write":
        GOLDEN.mkdir(exist_ok=True)
        for name, text in found.items():
            (GOLDEN / name).write_text(text)
    problems = []
    for name, text in found.items():
        expected = (GOLDEN / name).read_text()
        if text != expected:
            diff = difflib.unified_diff(expected.splitlines(), text.splitlines(),
                                        f"golden/{name}", "now", lineterm="", n=1)  # fmt: skip
            problems.append("\n".join(list(diff)[:60]))
    assert not problems, "\n\n".join(problems)
