"""The README's promises that drift silently: its log examples' line numbers, and its two
set-up commands, which CI must run verbatim."""

import ast
import re

from tests.servers import REPO

README = (REPO / "README.md").read_text()
LOG_EXAMPLE = re.compile(r"\b(?:DEBUG|INFO|WARNING|ERROR) at (\w+)\.(\w+):(\d+) ")
SERVE = ("python3 -m venv .venv && .venv/bin/pip install -e . && "
         ".venv/bin/apiphant serve myproduct 127.0.0.1:8001")  # fmt: skip
TEST = "bash .ci/test"


def _function_lines(module: str, function: str) -> range:
    tree = ast.parse((REPO / "apiphant" / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return range(node.lineno, node.end_lineno + 1)
    raise AssertionError(f"README shows a log line of {module}.{function}, which is gone")


def test_log_examples_name_real_log_calls():
    examples = LOG_EXAMPLE.findall(README)
    assert len(examples) >= 10
    for module, function, line in examples:
        number = int(line)
        source = (REPO / "apiphant" / f"{module}.py").read_text().splitlines()
        assert number in _function_lines(module, function), (module, function, number)
        assert re.search(r"\blog\.(debug|info|warning|error|exception)\(", source[number - 1]), (
            f"README: {module}.{function}:{number} is not a log call: {source[number - 1]!r}")


def test_the_two_set_up_commands_and_ci_runs_the_test_one():
    blocks = re.findall(r"```\n(.*?)\n```", README, re.S)
    assert SERVE in blocks and TEST in blocks
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", " ")) and line not in ("fi",)]
    assert commands[-1] == TEST
    assert not any("pip install" in line for line in commands)  # nothing into the system Python
