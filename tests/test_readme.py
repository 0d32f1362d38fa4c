"""The README's and docs' promises that drift silently: log examples name functions that
log, the two set-up commands CI must run verbatim, links that lead somewhere, and words a
user should never read (the project's issue numbers, "the seed")."""

import ast
import re
from pathlib import Path

from tests.servers import REPO

README = (REPO / "README.md").read_text()
#: Where log examples are shown to users.
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
#: A Markdown link or image: its target, up to a title or the closing parenthesis.
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
#: A fenced block's text, its language (if any) left out.
BLOCK = re.compile(r"^```[a-z]*\n(.*?)\n```$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
#: What a user must not read: the project's own bookkeeping, and its old name for 0.2.
INTERNAL = re.compile(r"\b(?:[Ii]ssue|[Ss]ession) #?\d+|\bthe seed\b|\bseed's\b")
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
    blocks = BLOCK.findall(README)
    assert SERVE in blocks and TEST in blocks
    commands = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", " ")) and line not in ("fi",)]
    assert commands[-1] == TEST
    assert not any("pip install" in line for line in commands)  # nothing into the system Python


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code blocks), as GitHub makes them:
    a repeated heading gets -1, -2..."""
    found: set[str] = set()
    for line in FENCE.sub("", doc.read_text()).splitlines():
        heading = re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = base = _slug(heading.group(1))
            n = 0
            while slug in found:
                n += 1
                slug = f"{base}-{n}"
            found.add(slug)
    return found


def _links(doc: Path) -> list[str]:
    """Every link target in prose (code blocks and inline code are not links)."""
    return LINK.findall(INLINE_CODE.sub("", FENCE.sub("", doc.read_text())))


def test_every_relative_link_leads_to_a_file_and_its_anchor():
    """Pages move and headings get renamed: each relative link of the README and docs/ names
    a file that exists, and a heading of it when it names an anchor."""
    broken = []
    count = 0
    for doc in DOCS:
        for target in _links(doc):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
                continue
            count += 1
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(REPO)}: {target}"
            if not file.exists():
                broken.append(f"{where}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in _anchors(file)):
                broken.append(f"{where}: no such heading in {file.name}")
    assert count >= 20, count  # the README's links to docs/, the docs' to each other
    assert broken == []


def test_no_issue_numbers_and_no_old_names_in_what_users_read():
    found = [f"{doc.relative_to(REPO)}:{n}: {line.strip()}"
             for doc in DOCS for n, line in enumerate(doc.read_text().splitlines(), 1)
             if INTERNAL.search(line)]  # fmt: skip
    assert found == []


def test_the_servers_options_table_is_serve_help():
    """docs/server.md's table of `apiphant serve`'s options is the one `serve -h` comes from
    (the schema), so the two cannot disagree, about --request-timeout or anything else."""
    from apiphant.settings import tables

    assert tables.render("options serve") in (REPO / "docs" / "server.md").read_text()
    assert tables.main(["--check", str(REPO / "README.md"), str(REPO / "docs")]) == 0


def _validation_example() -> str:
    page = (REPO / "docs" / "handlers.md").read_text()
    section = page[page.index("## Validation"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_validation_example_explains_and_raises_once_a_branch(make_product):
    """The example's explanation says what was expected (not the client's own input), and
    no raise follows another (the second could never run)."""
    from apiphant.client import Client

    source = _validation_example()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", [])
        pairs = zip(body, body[1:], strict=False) if isinstance(body, list) else []
        assert not any(isinstance(a, ast.Raise) and isinstance(b, ast.Raise) for a, b in pairs)
    items = "def get_item(id):\n    return {'id': id} if id == 7 else None\n\n\n"
    client = Client(make_product({"api/v0/items.py": items + source}, name="validated"))
    assert client.post("items", "read", {"id": 7}).json == {"id": 7}
    assert client.post("items", "read", {"id": 8}).json == {
        "error": {"field": "id", "state": "invalid"}}
    explained = client.post("items", "read", {"id": -1})
    assert explained.status == 400
    explain = explained.json["error"]["explain"]
    assert isinstance(explain, str) and "-1" not in explain


def _blocks(section: str) -> list[str]:
    """The fenced blocks of a README section, in order."""
    start = README.index(f"\n## {section}\n")
    end = README.find("\n## ", start + 1)
    return BLOCK.findall(README[start:end if end > 0 else None])


def test_the_quick_start_is_in_the_order_a_newcomer_types_it():
    """Serve, curl from another terminal, the example's smoke test; the whole suite (which
    starts nginx, sshd and chromium) is for contributors, in its own section."""
    quick = _blocks("Quick start")
    assert quick[0] == SERVE
    assert quick[1].startswith("curl ") and "127.0.0.1:8001/api/v0/echo/read" in quick[1]
    assert quick[2] == "./test.sh"
    assert TEST not in quick and TEST in _blocks("Contributing")


def test_the_readme_says_how_to_install_this_version():
    """The package index's `apiphant` is 0.2.5: the README says so, and how to install this
    one (from the repository, or a wheel built from it), before it is published."""
    quick = README[README.index("## Quick start"):README.index("## A product")]
    assert "0.2.5" in quick
    assert "pip install 'path/to/apiphant[deploy]'" in quick
    assert "pip wheel --no-deps" in quick and ".whl[deploy]'" in quick


def test_license_and_changelog():
    """setup.py says MIT: the LICENSE is MIT's text; the CHANGELOG covers this version and
    links the upgrade notes."""
    from apiphant import __version__

    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "apiphant maintainers" in license_text
    assert 'license="MIT"' in (REPO / "setup.py").read_text()
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in changelog and "0.2.5" in changelog
    assert "(docs/upgrading.md)" in changelog
