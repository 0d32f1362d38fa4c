"""schemathesis, a property-based client no one here wrote, against ``apiphant serve`` of the
template product and of the test product using every field() option: it reads
/api/openapi.json, generates valid and invalid requests (and other methods), and runs
every check it has (``--checks all``): no 5xx, every answer's status, headers and body as
the document says, valid data accepted, invalid data refused, 405 with Allow for the
methods a route does not take. Both products run against a real PostgreSQL (the session's
cluster), so the users' CRUD and Idempotency-Key are exercised. Bounded: a fixed seed and
at most N examples an operation."""

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import MYPRODUCT, REPO, serving
from tests.support.databases import migrate, new_database

psycopg = pytest.importorskip("psycopg")
CATALOG = REPO / "tests" / "products" / "catalog"
#: One line of configuration: 422 (an Idempotency-Key sent again with another body) is a
#: refusal for the server's state, as schemathesis already counts 409.
CONFIG = REPO / "tests" / "schemathesis.toml"
SCHEMATHESIS = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
pytestmark = pytest.mark.skipif(SCHEMATHESIS is None, reason="needs schemathesis (test extra)")
#: Examples an operation, per phase: enough for every option of every field to be tried,
#: valid and not, in about half a minute a product.
EXAMPLES = "40"


@pytest.fixture
def database(postgres) -> Iterator[str]:
    """A new database in the session's cluster with myproduct's migrations; dropped after."""
    with new_database(postgres, "st_") as url:
        done = migrate(MYPRODUCT, url)
        assert done.returncode == 0, done.stderr
        yield url


@pytest.mark.parametrize("folder", [MYPRODUCT, CATALOG], ids=["myproduct", "catalog"])
def test_schemathesis_checks_all_and_finds_nothing(folder: Path, database: str,
                                                   tmp_path: Path) -> None:  # fmt: skip
    with serving(folder, tmp_path, env={"DATABASE_URL": database}) as live:
        done = subprocess.run(
            [SCHEMATHESIS, "--config-file", str(CONFIG), "run", f"{live.url}/api/openapi.json",
             "--checks", "all", "--max-examples", EXAMPLES, "--seed", "35", "--workers", "1",
             "--no-color", "--request-timeout", "10"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        log = live.log()
    report = done.stdout[-8000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    summary = done.stdout.strip().splitlines()[-1]  # "== 757 passed ... ==" (or warnings)
    assert "failure" not in summary and "error" not in summary, report
    cases = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert cases and int(cases[1]) == int(cases[2]) > 100, report
    assert "ERROR" not in log and "Traceback" not in log, log[-4000:]
