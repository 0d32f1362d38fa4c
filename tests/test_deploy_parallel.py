"""Hosts prepare side by side: proven with barriers that only side-by-side steps can pass.

The real Fabric connections run the same code in every e2e deploy (tests/test_multihost.py
prepares several hosts at once).
"""

import os
import sys
import threading
import tomllib
from functools import partial
from pathlib import Path

import pytest
from fabric import Config as FabricConfig

from apiphant.deploy import tasks
from apiphant.deploy.config import parse
from apiphant.deploy.console import DryRun
from apiphant.deploy.errors import DeployError, StepFailed
from apiphant.deploy.orchestrate import (
    CONVERGE,
    current_releases,
    each_at_once,
    execute,
    locked,
    run_every_host,
    run_side_by_side,
    run_staged,
    serving_lines,
)
from apiphant.deploy.plan import Plan, Step
from apiphant.deploy.ssh import Remote, lost_line
from apiphant.deploy.tasks import UsageError
from tests.deploy_helpers import CHECKOUT, Sshd, fab
from tests.test_deploy_config import THREE_HOSTS, parsed


class Recording(DryRun):
    """Runs nothing; records which steps ran, and makes chosen steps wait or fail."""

    def __init__(self, barrier: threading.Barrier | None = None, failing: set[str] = frozenset()):
        super().__init__(parsed(THREE_HOSTS), out=lambda line: None)
        self.barrier = barrier
        self.failing = failing
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def run(self, step: Step) -> str:
        if self.barrier is not None and step.why == "meet":
            self.barrier.wait()  # breaks (fails the test) unless every host gets here at once
        if step.command in self.failing:
            raise StepFailed(step, f"{step.host}: {step.why} failed (exit 1)")
        with self.lock:
            self.ran.append(step.command)
        return ""


def steps(hosts: list[str], *whys: str) -> list[Step]:
    return [Step(h, why, f"{h}-{i}") for h in hosts for i, why in enumerate(whys)]


def test_every_host_runs_at_once_each_in_its_order() -> None:
    executor = Recording(threading.Barrier(3, timeout=20))
    run_side_by_side(executor, steps(["front", "a", "b"], "meet", "after"))
    for host in ("front", "a", "b"):
        assert executor.ran.index(f"{host}-0") < executor.ran.index(f"{host}-1")
    assert len(executor.ran) == 6


def test_parallel_bounds_how_many_hosts_run_at_once() -> None:
    # Two may meet; a third at once would be needed to pass a barrier of 3.
    executor = Recording(threading.Barrier(2, timeout=20))
    run_side_by_side(executor, steps(["a", "b"], "meet"), parallel=2)
    broken = Recording(threading.Barrier(3, timeout=2))
    with pytest.raises(threading.BrokenBarrierError):
        run_side_by_side(broken, steps(["front", "a", "b"], "meet"), parallel=2)


def test_one_at_a_time_is_the_steps_in_order() -> None:
    executor = Recording()
    run_side_by_side(executor, steps(["front", "a", "b"], "x", "y"), parallel=1)
    assert executor.ran == ["front-0", "front-1", "a-0", "a-1", "b-0", "b-1"]


def test_a_failure_is_raised_once_all_stopped_naming_every_failed_host() -> None:
    # a and b both reach their failing step (a second meeting) before either fails.
    executor = Recording(threading.Barrier(3, timeout=20), failing={"a-1", "b-1"})
    with pytest.raises(DeployError) as caught:
        run_side_by_side(executor, steps(["front", "a", "b"], "meet", "meet", "check"))
    message = str(caught.value)
    assert message == "a: meet failed (exit 1); failed too: b: meet failed (exit 1)"
    assert "a-2" not in executor.ran and "b-2" not in executor.ran


def test_one_failed_host_is_its_own_error() -> None:
    executor = Recording(failing={"a-0"})
    with pytest.raises(StepFailed) as caught:
        run_side_by_side(executor, steps(["a", "b"], "unpack"))
    assert str(caught.value) == "a: unpack failed (exit 1)"


@pytest.mark.parametrize("value", ["-1", "x", "1.5", " 2a"])
def test_parallel_must_be_a_positive_integer(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        tasks.parallel_width(value)
    assert str(caught.value).startswith("--parallel: expected a positive number of hosts")


def test_parallel_width_default_is_all() -> None:
    assert tasks.parallel_width("") == 0 and tasks.parallel_width(0) == 0
    assert tasks.parallel_width("3") == 3


def test_dry_run_shows_hosts_side_by_side_and_refuses_a_bad_parallel(tmp_path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(THREE_HOSTS)
    base = ("deploy", "--product", str(CHECKOUT / "myproduct"), "--config", str(config))
    shown = fab(*base, "--dry-run", "--parallel", "2")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "3 hosts side by side, 2 at a time, each host's steps in order" in shown.stdout
    refused = fab(*base, "--dry-run", "--parallel", "zero")
    assert refused.returncode == 2
    assert refused.stdout.strip().splitlines()[-1] == (
        "error: --parallel: expected a positive number of hosts, like 4, got 'zero'"
    )


def test_stages_one_after_another_hosts_side_by_side_within_each() -> None:
    """The activate phase: a stage's hosts meet (side by side); no step of the next stage
    runs before every host has ended the stage before it."""
    executor = Recording(threading.Barrier(2, timeout=20))
    first = [Step(h, "meet", f"{h}-switch", stage=0) for h in ("a", "b")]
    slow = Step("a", "after the meeting", "a-link", stage=0)
    second = [Step(h, "meet", f"{h}-restart", stage=1) for h in ("front", "b")]
    run_staged(executor, [*first, slow, *second], set())
    ran = executor.ran
    assert max(ran.index(c) for c in ("a-switch", "b-switch", "a-link")) < min(
        ran.index(c) for c in ("front-restart", "b-restart"))  # fmt: skip


def test_a_switch_in_a_side_by_side_stage_is_recorded_for_the_rollback() -> None:
    switched: set[str] = set()
    steps_ = [Step(h, "switch", f"{h}-switch", switch=True) for h in ("a", "b")]
    with pytest.raises(DeployError):
        run_staged(Recording(failing={"b-link"}), [*steps_, Step("b", "link", "b-link")],
                   switched)  # fmt: skip
    assert switched == {"a", "b"}


def test_locks_are_taken_and_released_on_every_host_at_once() -> None:
    """Ten hosts' locks are one round trip, not ten: every host's lock meets the others."""
    executor = Recording(threading.Barrier(3, timeout=20))
    take = [Step(h, "meet", f"{h}-lock", kind="lock") for h in ("front", "a", "b")]
    release = [Step(h, "meet", f"{h}-unlock") for h in ("front", "a", "b")]
    with locked(executor, tuple(take), tuple(release)):
        executor.ran.append("acted")
    assert executor.ran.index("acted") == 3 and len(executor.ran) == 7


def test_a_lock_held_on_one_host_releases_those_taken_and_acts_nowhere() -> None:
    executor = Recording(failing={"a-lock"})
    take = [Step(h, "take", f"{h}-lock", kind="lock") for h in ("front", "a", "b")]
    release = [Step(h, "release", f"{h}-unlock") for h in ("front", "a", "b")]
    with pytest.raises(StepFailed) as caught:
        with locked(executor, tuple(take), tuple(release)):
            executor.ran.append("acted")
    assert str(caught.value) == "a: take failed (exit 1)"
    assert "acted" not in executor.ran and "a-unlock" not in executor.ran
    assert {"front-unlock", "b-unlock"} <= set(executor.ran)


def test_a_failed_release_of_a_lock_is_reported_and_the_others_released() -> None:
    lines: list[str] = []
    executor = Recording(failing={"a-unlock"})
    executor.out = lines.append
    take = [Step(h, "take", f"{h}-lock", kind="lock") for h in ("a", "b")]
    release = [Step(h, "release", f"{h}-unlock") for h in ("a", "b")]
    with locked(executor, tuple(take), tuple(release)):
        pass
    assert "b-unlock" in executor.ran
    assert "[a] could not release the deploy lock: a: release failed (exit 1)" in lines


class Answering(DryRun):
    """Answers the current-release query from a table, each host only once all have asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(parsed(THREE_HOSTS), out=lambda line: None)
        self.answers = answers
        self.barrier = threading.Barrier(len(answers), timeout=20)

    def query(self, host: str, command: str, why: str) -> str:
        self.barrier.wait()
        return self.answers[host]


def test_every_host_is_asked_its_current_release_at_once() -> None:
    executor = Answering({"front": "20250102030405\n", "a": "current\n", "b": "\n"})
    hosts = executor.config.hosts
    assert current_releases(executor, executor.config, hosts) == {
        "front": "20250102030405", "a": "", "b": ""}  # fmt: skip


#: One sshd under this many names (127.0.0.1, .2, ...), each a host of deploy.toml; and how
#: many times all of them connect at once.
MANY_HOSTS = 16
ROUNDS = 20


def peer(remote: Remote, host: str) -> str:
    """The address a host's new connection reached, or what opening it raised."""
    try:
        return remote.connection(host).transport.getpeername()[0]
    except Exception as error:  # the old code's AttributeError and KeyError among them
        return f"{type(error).__name__}: {error}"


@pytest.mark.skipif(os.geteuid() != 0, reason="starts an sshd that lets root log in")
def test_many_hosts_connect_at_once_from_the_one_fabric_config(tmp_path: Path) -> None:
    """``fab`` hands every task one Fabric configuration, and a deploy connects to every host
    at once (``host_facts``, the locks). Fabric writes to the configuration a connection is
    built from, so a shared one failed another host's connection now and then (``No
    attribute or config key found for 'port'``). 16 hosts connect at once, 20 times, each
    from a fresh Remote as a deploy's; each must reach its own address.

    Threads switch every 10 microseconds here (Python's default is 5 ms): far more of the
    interleavings the bug needs, so the old code failed in about every other round; code
    that shares nothing between threads passes under any interleaving."""
    with Sshd(tmp_path / "ssh", addresses=MANY_HOSTS) as sshd:
        toml = 'product = "myproduct"\nserver_names = ["api.example.com"]\n' + "".join(
            f'[hosts.h{n}]\nssh = "{target}"\nroles = ["nginx"]\n'
            for n, target in enumerate(sshd.targets))  # fmt: skip
        config = parse(tomllib.loads(toml), Path("deploy.toml"), CHECKOUT / "myproduct")
        # as `fab -i KEY` gives it: the key file in connect_kwargs
        fabric = FabricConfig(overrides={"connect_kwargs": {"key_filename": [str(sshd.key)]}})
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        try:
            for _ in range(ROUNDS):
                remote = Remote(config, fabric, out=lambda line: None)
                try:
                    opened = each_at_once([(h.name, partial(peer, remote, h.name))
                                           for h in config.hosts])  # fmt: skip
                finally:
                    remote.close()
                assert opened == {f"h{n}": a for n, a in enumerate(sshd.addresses)}
        finally:
            sys.setswitchinterval(interval)


class Fleet(DryRun):
    """Hosts that each serve a release: a step ``serve R`` switches its host to R, ``lose``
    takes its host away for good (every later step there fails as a lost connection), and
    the release queries answer from that state. Orchestration only: the real hosts are
    tests/test_multihost.py's."""

    def __init__(self, serving: dict[str, str]) -> None:
        self.said: list[str] = []
        super().__init__(parsed(THREE_HOSTS), out=self.said.append)
        self.serving = dict(serving)
        self.ran: list[str] = []

    def run(self, step: Step) -> str:
        if step.host in self.lost or step.command == "lose":
            self.lost[step.host] = "connection lost"
            raise StepFailed(step, f"{lost_line(step.host, EOFError())}, during the step "
                             f"{step.why!r}")  # fmt: skip
        self.ran.append(f"{step.host}: {step.command}")
        if step.command.startswith("serve "):
            self.serving[step.host] = step.command.split()[1]
        return ""

    def query(self, host: str, command: str, why: str) -> str:
        assert host not in self.lost, f"{host} asked again after it was lost"
        release = self.serving[host]
        if command.startswith("basename"):  # host.releases.current_release
            return release + "\n"
        return f"{release} failed current\nR1 good\n" if release != "R1" else "R1 good current\n"


def test_a_host_lost_after_the_switch_is_left_out_and_the_others_roll_back() -> None:
    """b is lost after its switch, in the restarts: front and a are rolled back all the
    same (before, b's failed rollback stopped them on the new release), b is said to be
    lost, in words, and who serves what is printed, loudly since they differ."""
    fleet = Fleet({"front": "R1", "a": "R1", "b": "R1"})
    hosts = list(fleet.config.hosts)
    activate = (Step("a", "switch", "serve R2", switch=True),
                Step("b", "switch", "serve R2", switch=True),
                Step("front", "switch", "serve R2", switch=True, stage=1),
                Step("a", "restart", "restart a", stage=2),
                Step("b", "restart", "lose", stage=2))  # fmt: skip
    the_plan = Plan("R2", ("front", "a", "b"), activate=activate)

    def rollback(targets: dict[str, str]) -> Plan:
        assert targets == {"a": "R1", "front": "R1"}  # b, lost, is left out
        steps = [Step(h, "switch back", f"serve {r}", stage=h == "front") for h, r in
                 targets.items()]  # fmt: skip
        return Plan("R1", tuple(targets), activate=tuple(steps),
                    verify=tuple(Step(h, "smoke", "smoke") for h in targets))  # fmt: skip

    outcome = execute(the_plan, fleet, rollback, hosts, fleet.config)
    assert not outcome.ok
    assert fleet.serving == {"front": "R1", "a": "R1", "b": "R2"}
    assert outcome.message == (
        "deploy of R2 failed: b: connection lost, during the step 'restart'; ROLLED BACK: "
        "a serves R1 again, front serves R1 again (its workers answer /health with it, and "
        "its smoke test passes); NOT ROLLED BACK: b: connection lost")
    assert "EOFError" not in "\n".join(fleet.said)
    table = fleet.said[fleet.said.index(f"==> HOSTS SERVE DIFFERENT RELEASES ({CONVERGE}):"):]
    assert table[1:] == ["  front  R1", "  a      R1", "  b      unknown: connection lost"]


def test_a_rollback_goes_on_on_every_host_that_answers() -> None:
    """One host failing in a rollback stops its own steps only, in every stage after."""
    fleet = Fleet({"front": "R2", "a": "R2", "b": "R2"})
    failures: dict[str, DeployError] = {}
    steps = [Step("a", "switch", "serve R1"), Step("b", "switch", "lose"),
             Step("front", "switch", "serve R1", stage=1), Step("b", "restart", "x", stage=1),
             Step("a", "restart", "restart a", stage=2)]  # fmt: skip
    run_every_host(fleet, steps, failures)
    assert list(failures) == ["b"] and str(failures["b"]).startswith("b: connection lost")
    assert fleet.ran == ["a: serve R1", "front: serve R1", "a: restart a"]


def test_the_lost_line_names_the_host_never_an_exception_class() -> None:
    assert lost_line("api2", EOFError()) == "api2: connection lost"
    assert lost_line("api2", OSError(110, "Connection timed out")) == (
        "api2: connection lost (Connection timed out)")  # fmt: skip


@pytest.mark.parametrize(("rows", "wanted", "targets"), [
    # one release everywhere: the newest good one older than it, on each host
    ({"a": [("R2", True, True), ("R1", True, False)], "b": [("R2", True, True),
      ("R1", True, False)]}, "", {"a": "R1", "b": "R1"}),
    # a deploy that failed part way: b still on R2 (failed); all go to R1, a is there
    ({"a": [("R2", False, False), ("R1", True, True)], "b": [("R2", False, True),
      ("R1", True, False)]}, "", {"a": "R1", "b": "R1"}),
    # some hosts rolled back before: the others join them, not the other way round
    ({"a": [("R3", True, False), ("R2", True, True), ("R1", True, False)],
      "b": [("R3", True, True), ("R2", True, False), ("R1", True, False)]}, "",
     {"a": "R2", "b": "R2"}),
    ({"a": [("R2", True, True), ("R1", True, False)], "b": [("R1", True, True)]}, "R1",
     {"a": "R1", "b": "R1"}),
])  # fmt: skip
def test_fab_rollback_ends_with_every_host_on_one_release(rows, wanted, targets) -> None:
    assert tasks.rollback_targets(rows, wanted) == targets


def test_fab_rollback_refuses_hosts_that_share_no_good_release() -> None:
    rows = {"a": [("R2", True, True)], "b": [("R1", True, True)]}
    with pytest.raises(UsageError) as refused:
        tasks.rollback_targets(rows)
    assert str(refused.value) == (
        "hosts serve different releases (a R2, b R1) and none that passed a deploy on every "
        "one of them is older: deploy instead")  # fmt: skip


def test_who_serves_what_is_one_line_per_host() -> None:
    one, lines = serving_lines({"front": [("R1", True, True)], "api1": [("R1", True, True)]})
    assert one and lines == ["  front  R1", "  api1   R1"]
    one, lines = serving_lines({"front": [("R1", True, True)], "api1": [("R2", False, True)],
                                "api2": [], "api3": DeployError("api3: connection lost")})
    assert not one and lines == ["  front  R1", "  api1   R2 (failed: it never passed a deploy)",
                                 "  api2   none", "  api3   unknown: connection lost"]
