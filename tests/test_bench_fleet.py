"""bench/fleet.py's pure parts: fleet shapes as the kit reads them, phases, the table.
Milliseconds; the bench itself (real hosts, real deploys) runs apart, as root."""

import os
import shutil
from pathlib import Path

import pytest

from apiphant.deploy.config import load
from bench import fleet
from tests.deploy_helpers import CHECKOUT


@pytest.mark.parametrize("size", [1, 3, 10])
def test_deploy_toml_is_the_shape_the_kit_reads(size: int, tmp_path: Path) -> None:
    shape = fleet.shape(size)
    product = tmp_path / fleet.PRODUCT
    shutil.copytree(CHECKOUT / fleet.PRODUCT, product)
    addresses = {name: f"10.9.9.{10 + n}" for n, name in enumerate(shape.names)}
    (product / "deploy.toml").write_text(fleet.deploy_toml(shape, addresses))
    config = load(product / "deploy.toml")
    assert [h.name for h in config.hosts] == shape.names
    api_hosts = [h.name for h in config.hosts if h.has("api")]
    assert len(api_hosts) == max(1, size - 1)
    assert all(len(config.workers(h)) == fleet.WORKERS for h in config.hosts if h.has("api"))
    pools = {p.name: list(p.hosts) for p in config.pools}
    if size == 10:
        assert pools == {"main": api_hosts[:5], "reports": api_hosts[5:]}
    else:
        assert sorted(h for hosts in pools.values() for h in hosts) == sorted(api_hosts)


def test_unknown_fleet_size_is_refused() -> None:
    with pytest.raises(SystemExit) as refused:
        fleet.parse_args(["--fleets", "1,2"])
    assert refused.value.code == 2


def test_phases_from_the_kits_lines() -> None:
    lines = [
        (1.0, "local: building the apiphant wheel"),
        (2.0, "==> lock: front, api1"),
        (2.5, "==> prepare release 20261201063000"),
        (9.0, "[api1] virtualenv: same packages as an earlier release, reused /opt/x"),
        (9.1, "[api2] virtualenv with apiphant[api3]   " + fleet.REUSED + " /opt/y"),
        (9.2, "[api4] $ if [ -e x ]; then echo '" + fleet.REUSED + "'; fi"),
        (12.5, "==> activate release 20261201063000"),
        (30.0, "==> verify"),
        (31.0, "==> OK: release 20261201063000 is live"),
    ]
    assert fleet.phases(lines, 31.5) == [
        ("build", 2.0), ("lock", 0.5), ("prepare", 10.0), ("activate", 17.5),
        ("verify", 1.0), ("OK", 0.5),
    ]  # fmt: skip
    output = "\n".join(line for _, line in lines)
    assert fleet.reused_on(output) == ["api1", "api3"]  # not api4: its command


def test_table_rows() -> None:
    results = [
        {"hosts": 1, "label": "1 (all roles)",
         "first": {"seconds": 20.04, "ok": True, "phases": [("build", 2.0)]},
         "second": {"seconds": 8.0, "ok": True, "phases": [("build", 1.0), ("activate", 5.0)]},
         "installed on second": [], "load": {"clients": 20, "rate per client": 10, "requests": 1234,
                  "failed": 0}},
        {"hosts": 10, "label": "10 (one front, nine API hosts in two pools)",
         "first": {"seconds": 40.0, "ok": True, "phases": []},
         "second": {"seconds": 16.0, "ok": False, "phases": []},
         "installed on second": ["api1", "api2"]},
        {"hosts": 3, "label": "3 (one Nginx front, two API hosts)", "error": "no sshd"},
    ]  # fmt: skip
    assert fleet.table(results)[2:] == [
        "| 1 (all roles) | 20.0 s | 8.0 s | none | — | 0 of 1,234 (20 clients × 10/s) |",
        "| 10 (one front, nine API hosts in two pools) | 40.0 s | 16.0 s (failed) "
        "| 2 of 10 hosts | — | — |",
        "| 3 (one Nginx front, two API hosts) | — | — | — | — | — |",
    ]
    assert fleet.phase_table(results)[0] == "| deploy | build | activate |"
    assert fleet.phase_table(results)[3] == "| 1 hosts, second | 1.0 | 5.0 |"
    assert fleet.markers("Before") == ("<!-- bench:fleet-before:begin -->",
                                       "<!-- bench:fleet-before:end -->")  # fmt: skip


def test_busy_seconds_leave_out_idle_and_iowait() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    #        user nice system idle iowait irq softirq steal guest guest_nice
    stat = f"cpu  {3 * ticks} 0 {ticks} {50 * ticks} {7 * ticks} 0 {ticks} 0 0 0\ncpu0 1 2 3\n"
    assert fleet.busy_seconds(stat) == 5.0


def test_cpu_table_shows_the_least_wall_time_the_cores_allow() -> None:
    results = [
        {"hosts": 1, "first": {"seconds": 7.0, "cpu": 6.0}, "second": {"seconds": 2.0, "cpu": 1.5}},
        {"hosts": 10, "second": {"seconds": 5.5, "cpu": 8.3}, "third": {"seconds": 9.0}},
    ]
    assert fleet.cpu_table(results, 2)[2:] == [
        "| 1 hosts, first | 7.0 s | 6.0 | 3.0 s |",
        "| 1 hosts, second | 2.0 s | 1.5 | 0.8 s |",
        "| 10 hosts, second | 5.5 s | 8.3 | 4.2 s |",
    ]
    assert fleet.cpu_table([{"hosts": 1, "second": {"seconds": 2.0}}], 2) == []  # older runs
