"""The README's promises that drift silently: its log examples name functions that log,
and its two set-up commands, which CI must run verbatim."""

import ast
import re

from tests.servers import REPO

README = (REPO / "README.md").read_text()
#: Where log examples are shown to users.
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LOG_CALL = re.compile(r"\blog\.(debug|info|warning|error|exception)\(")
LOG_EXAMPLE = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR) at (\w+)\.(\w+):(\d+) ")
SERVE = ("python3 -m venv .venv && .venv/bin/pip install -e . && "
         ".venv/bin/apiphant serve myproduct 127.0.0.1:8001")  # fmt: skip
TEST = "bash .ci/test"


def _functions_with_log_calls(module: str, function: str) -> list[str]:
    """Every ``function`` of a module named ``module`` anywhere under apiphant/ that makes a
    log call: a log line's ``module.function`` (logging's own fields, not a path)."""
    found = []
    for path in (REPO / "apiphant").rglob(f"{module}.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == function:
                source = ast.get_source_segment(path.read_text(), node) or ""
                if LOG_CALL.search(source):
                    found.append(str(path.relative_to(REPO)))
    return found


def test_log_examples_name_real_log_calls():
    """Each example names a function that logs: the number after it is where it was when the
    example was written, and may move with the code."""
    examples = [m for doc in DOCS for m in LOG_EXAMPLE.findall(doc.read_text())]
    assert len(examples) >= 10
    for module, function, _ in examples:
        assert _functions_with_log_calls(module, function), (
            f"a log example names {module}.{function}, which makes no log call (or is gone)")


def test_the_two_set_up_commands_and_ci_runs_the_test_one():
    blocks = re.findall(r"```\n(.*?)\n```", README, re.S)
    assert SERVE in blocks and TEST in blocks
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", " ")) and line not in ("fi",)]
    assert commands[-1] == TEST
    assert not any("pip install" in line for line in commands)  # nothing into the system Python
