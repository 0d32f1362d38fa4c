"""``apiphant db start|url|stop|reset``: a real private cluster in the product's folder, its
messages and exit statuses, and ``apiphant serve`` picking it up while DATABASE_URL is unset."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import requests

from apiphant import cli
from apiphant.db import cluster, commands
from tests.servers import REPO, serving

psycopg = pytest.importorskip("psycopg")

NOTES = """
    from apiphant import db

    def read(request):
        with db.connection() as conn:
            return {"rows": conn.execute("SELECT count(*) FROM notes").fetchone()[0]}
"""


@pytest.fixture(scope="module")
def product():
    """A product in a folder the postgres user reaches (root's PostgreSQL runs as postgres,
    and pytest's tmp_path is private to root); its cluster stopped and all deleted after."""
    try:
        cluster.find_bindir()
    except cluster.ClusterError as error:
        pytest.skip(str(error))
    parent = Path(tempfile.mkdtemp(prefix="apiphant-db-"))
    parent.chmod(0o755)
    path = parent / "shop"
    (path / "api" / "v0").mkdir(parents=True)
    (path / "api" / "v0" / "notes.py").write_text(textwrap.dedent(NOTES))
    try:
        yield path
    finally:
        try:
            cluster.of_product(path, "shop").stop()
        finally:
            shutil.rmtree(parent, ignore_errors=True)


def apiphant_db(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "apiphant", "db", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL,
                          env={**environ, **(env or {})})  # fmt: skip


def rows(url: str) -> list:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT text FROM notes").fetchall()


def test_start_url_stop_and_reset_keep_or_delete_the_data_as_they_say(product) -> None:
    folder = product / ".postgres"
    started = apiphant_db("start", str(product))
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url == f"postgresql://shop@/shop?host={folder}"  # the URL alone on stdout
    assert f"PostgreSQL runs in {folder}" in started.stderr
    assert (folder / cluster.SOCKET).exists()
    again = apiphant_db("start", str(product))
    assert again.returncode == 0 and again.stdout.strip() == url
    assert "already runs" in again.stderr
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE notes (text text); INSERT INTO notes VALUES ('kept')")
        assert conn.info.host == str(folder)  # the socket in the folder
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # and no TCP

    shown = apiphant_db("url", str(product))
    assert (shown.returncode, shown.stdout.strip()) == (0, url)

    stopped = apiphant_db("stop", str(product))
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert not (folder / cluster.SOCKET).exists()
    gone = apiphant_db("url", str(product))
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.strip() == (f"apiphant db url: no development database runs in {folder}: "
                                   f"apiphant db start {product}")  # fmt: skip
    assert apiphant_db("stop", str(product)).stderr.strip().endswith("was not running")

    assert apiphant_db("start", str(product)).returncode == 0
    assert rows(url) == [("kept",)]  # stop keeps the data

    refused = apiphant_db("reset", str(product))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"apiphant db reset: this deletes every row in {folder}: "
                                      "add --yes to confirm")  # fmt: skip
    assert rows(url) == [("kept",)]

    reset = apiphant_db("reset", str(product), "--yes")
    assert reset.returncode == 0 and reset.stdout.strip() == url
    with pytest.raises(psycopg.errors.UndefinedTable):
        rows(url)


def test_serve_uses_the_running_development_database_when_database_url_is_unset(
        product, tmp_path) -> None:  # fmt: skip
    url = apiphant_db("start", str(product)).stdout.strip()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (text text)")
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with serving(product, tmp_path, env=environ) as live:
        answer = requests.post(f"{live.url}/api/v0/notes/read", json={}, timeout=30)
        assert answer.status_code == 200 and "rows" in answer.json()
        assert f"DATABASE_URL is unset: using the development database {url}" in live.log()


def test_without_postgresql_one_line_names_the_package(make_product, tmp_path, monkeypatch,
                                                       capsys) -> None:  # fmt: skip
    bare = make_product({}, name="bare")
    monkeypatch.setattr(cluster, "SEARCH", (str(tmp_path),))
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config either
    assert commands.main(["start", str(bare)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("apiphant db start: PostgreSQL is not installed (no initdb or pg_ctl found): "
                   "apt-get install postgresql\n")  # fmt: skip


def test_a_bad_action_or_product_is_one_line_and_exit_status_2(tmp_path, capsys) -> None:
    assert commands.main(["start", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"apiphant db: no such product folder: {tmp_path}/nowhere\n"
    assert cli.main(["db", "restart", "x"]) == 2
    assert "invalid choice: 'restart'" in capsys.readouterr().err


def test_apiphant_02s_serve_of_a_product_named_db_still_serves() -> None:
    assert cli._is_db(["db", "start", "shop"]) and cli._is_db(["db", "-h"])
    assert not cli._is_db(["db", "127.0.0.1:8001"])  # apiphant 0.2: serve the folder db


def test_the_search_takes_pg_config_first_then_the_newest_version(tmp_path) -> None:
    for version in ("13", "15", "9.6"):
        (tmp_path / version / "bin").mkdir(parents=True)
    found = cluster.candidates("/opt/pg/bin", (str(tmp_path),))
    assert found == [Path("/opt/pg/bin"), *(tmp_path / v / "bin" for v in ("15", "13", "9.6"))]
