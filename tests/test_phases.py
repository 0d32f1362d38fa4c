"""Phases as data: a plan's phases say how they run and what a failure in them means, and
the runner reads those flags, never a phase's name. A plan of phases no deploy has is run
and printed as a deploy's are. Orchestration only: the real hosts are test_multihost's."""

import threading
from dataclasses import replace

import pytest

from apiphant.deploy.console import DryRun, print_plan
from apiphant.deploy.errors import DeployError, StepFailed, Unreachable
from apiphant.deploy.facts import host_facts
from apiphant.deploy.orchestrate import execute
from apiphant.deploy.plan import (
    ACTIVATE,
    DEPLOY,
    RELEASE,
    VERIFY,
    Phase,
    Plan,
    Step,
    StepKind,
)
from tests.test_deploy_config import THREE_HOSTS, parsed


class Hosts(DryRun):
    """Hosts that each serve a release: ``serve R`` switches a host to R, a command in
    ``failing`` fails; the release queries answer from that state. Records what ran and
    what was asked, in order."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.said: list[str] = []
        super().__init__(parsed(THREE_HOSTS), out=self.said.append)
        self.failing = failing
        self.serving = {"a": "R1", "b": "R1"}
        self.ran: list[str] = []
        self.threads: dict[str, str] = {}  # command: the thread that ran it
        self.lock = threading.Lock()

    def run(self, step: Step) -> str:
        with self.lock:
            self.ran.append(f"{step.host}: {step.command}")
            self.threads[step.command] = threading.current_thread().name
        if step.command in self.failing:
            raise StepFailed(step, f"{step.host}: {step.why} failed (exit 1)")
        if step.command.startswith("serve "):
            self.serving[step.host] = step.command.split()[1]
        return ""

    def query(self, host: str, command: str, why: str) -> str:
        with self.lock:
            self.ran.append(f"{host}? {why}")
        if command.startswith("basename"):  # host.releases.current_release
            return self.serving[host] + "\n"
        return f"{self.serving[host]} good current\n"  # host.releases.releases


def on_both(why: str, command: str, **kw) -> tuple[Step, ...]:
    return tuple(Step(h, why, command.replace("HOST", h), **kw) for h in ("a", "b"))


def custom_plan(release: str = "R2") -> Plan:
    """Phases no deploy has: one that runs once, one that rolls back, one that tidies."""
    return Plan(
        release,
        ("a", "b"),
        lock=on_both("lock", "lock HOST", kind="lock"),
        phases=(
            Phase("fetch", (Step("b", "fetch", "fetch b"), Step("a", "fetch", "fetch once")),
                  staged=False),
            Phase("swap", on_both("swap", f"serve {release}", switch=True), rolls_back=True),
            Phase("tidy", on_both("tidy", "tidy HOST")),
        ),
        unlock=on_both("unlock", "unlock HOST"),
    )


def back_to(targets: dict[str, str]) -> Plan:
    return Plan("back", tuple(targets), phases=(
        Phase("unswap", tuple(Step(h, "unswap", f"serve {r}") for h, r in targets.items())),
        Phase("check", tuple(Step(h, "check", f"check {h}") for h in targets)),
    ))  # fmt: skip


def run(hosts: Hosts, the_plan: Plan):
    chosen = [hosts.config.host("a"), hosts.config.host("b")]
    return execute(the_plan, hosts, back_to, chosen, hosts.config)


def test_a_plan_of_its_own_phases_runs_them_in_order_by_their_flags() -> None:
    hosts = Hosts()
    outcome = run(hosts, custom_plan())
    assert outcome.ok and outcome.message == "release R2 is live on a, b"
    headings = [line for line in hosts.said if line.startswith("==> ")]
    assert headings == ["==> lock: a, b", "==> fetch", "==> swap", "==> tidy"]
    ran = hosts.ran
    # Before the first phase that rolls back, and only then, each host is asked what it serves.
    asked = [n for n, line in enumerate(ran) if "which release is current" in line]
    assert len(asked) == 2
    assert ran.index("b: fetch b") < ran.index("a: fetch once") < min(asked)
    assert max(asked) < min(ran.index("a: serve R2"), ran.index("b: serve R2"))
    assert ran.index("a: serve R2") < ran.index("a: tidy a") < ran.index("a: unlock a")
    assert hosts.serving == {"a": "R2", "b": "R2"}
    # Staged: the hosts side by side, each in a thread of its own; else one after another.
    assert {hosts.threads[c] for c in ("fetch b", "fetch once")} == {"MainThread"}
    assert all(hosts.threads[c].startswith("apiphant-host") for c in ("tidy a", "tidy b"))


def test_a_failure_in_a_phase_that_rolls_back_runs_the_rollbacks_phases() -> None:
    plan = custom_plan()
    swap = plan.phases[1]
    late = replace(plan, phases=(plan.phases[0], swap.of((*swap.steps,
                                 *on_both("restart", "restart HOST", stage=1))), plan.phases[2]))
    hosts = Hosts(failing={"restart b"})
    outcome = run(hosts, late)
    assert not outcome.ok
    assert hosts.serving == {"a": "R1", "b": "R1"}  # the rollback plan's phases ran
    assert "a: check a" in hosts.ran and "b: check b" in hosts.ran
    assert not any("tidy" in line for line in hosts.ran)  # the phases after it did not
    assert "ROLLED BACK: a serves R1 again, b serves R1 again" in outcome.message


def test_a_failure_in_a_phase_that_does_not_roll_back_stops_the_deploy_as_it_is() -> None:
    hosts = Hosts(failing={"tidy b"})
    outcome = run(hosts, custom_plan())
    assert not outcome.ok
    assert outcome.message == "deploy of R2 failed, after the switch: b: tidy failed (exit 1)"
    assert hosts.serving == {"a": "R2", "b": "R2"}  # no rollback
    assert "a: unlock a" in hosts.ran and "b: unlock b" in hosts.ran


def test_a_lasting_phase_that_ran_is_said_when_the_deploy_fails_before_the_switch() -> None:
    plan = custom_plan()
    migrate = RELEASE.of((Step("a", "migrate", "migrate"),))
    lasting = replace(plan, phases=(migrate, Phase("fail", (Step("a", "x", "boom"),))))
    outcome = run(Hosts(failing={"boom"}), lasting)
    assert outcome.message == (
        "deploy of R2 failed, nothing was switched (what the release command changed before "
        "it failed stays): a: x failed (exit 1)")
    plain = replace(plan, phases=(Phase("fail", (Step("a", "x", "boom"),)),))
    outcome = run(Hosts(failing={"boom"}), plain)
    assert "nothing was switched, nothing live was touched" in outcome.message


def test_a_plan_of_its_own_phases_prints_them_by_name() -> None:
    shown: list[str] = []
    print_plan(custom_plan(), DryRun(parsed(THREE_HOSTS), shown.append),
               back_to({"a": "R1", "b": "R1"}))  # fmt: skip
    headings = [line for line in shown if line.startswith("==> ")]
    assert headings == ["==> lock (2 steps)", "==> fetch (2 steps)", "==> swap (2 steps)",
                        "==> tidy (2 steps)", "==> unlock (2 steps)",
                        "==> on a failure after the switch: rollback to the release current "
                        "before it"]  # fmt: skip
    assert shown[-8:] == ["[a] unswap", "[a] $ serve R1", "[b] unswap", "[b] $ serve R1",
                          "[a] check", "[a] $ check a", "[b] check", "[b] $ check b"]
    assert shown[shown.index("==> fetch (2 steps)") + 1:][:4] == [
        "[b] fetch", "[b] $ fetch b", "[a] fetch", "[a] $ fetch once"]


def test_a_steps_kind_is_an_enum_and_a_string_is_taken_as_one() -> None:
    assert Step("a", "lock", "x", kind="lock").kind is StepKind.LOCK
    assert Step("a", "plain", "x").kind is StepKind.PLAIN
    assert Step("a", "report", "x", kind=StepKind.REPORT).kind == "report"
    with pytest.raises(ValueError):
        Step("a", "typo", "x", kind="lokc")


def test_a_deploys_phases_by_name_and_the_plan_kept_whole_by_replace() -> None:
    steps = (Step("a", "switch", "serve R2", switch=True),)
    named = Plan("R2", ("a",), verify=steps, activate=steps)
    assert named.phases == (ACTIVATE.of(steps), VERIFY.of(steps))  # in a deploy's order
    assert named.activate == steps and named.prepare == () and named.release_phase == ()
    assert [p.name for p in DEPLOY] == ["prepare", "release", "activate", "verify", "finish"]
    locked = replace(named, lock=steps)
    assert locked.phases == named.phases and locked.lock == steps
    assert locked.steps() == [*steps, *steps, *steps]
    with pytest.raises(TypeError, match="no phase named rollout"):
        Plan("R2", ("a",), rollout=steps)
    with pytest.raises(TypeError):  # no positional phases: each is named
        Plan("R2", ("a",), (), steps)  # type: ignore[misc]


# The questions a deploy asks before it changes anything


class Unanswered(DryRun):
    """Each host answers once every host has asked (they are asked all at once); the hosts
    in ``down`` cannot be reached."""

    def __init__(self, down: set[str]) -> None:
        super().__init__(parsed(THREE_HOSTS), out=lambda line: None)
        self.down = down
        self.barrier = threading.Barrier(3, timeout=20)
        self.asked: list[str] = []

    def query(self, host: str, command: str, why: str) -> str:
        self.asked.append(host)
        self.barrier.wait()  # breaks (fails the test) unless all three are asked at once
        if host in self.down:
            raise Unreachable(f"{host} (ssh): cannot connect: No route to host")
        return ""


def test_host_facts_stops_the_deploy_on_a_host_that_cannot_be_reached() -> None:
    """Every host is asked at once; one that cannot answer stops the deploy in one line
    that says nothing was changed; of several, the first in deploy.toml's order."""
    hosts = Unanswered({"b"})
    with pytest.raises(DeployError) as stopped:
        host_facts(hosts, hosts.config, list(hosts.config.hosts))
    assert str(stopped.value) == (
        "b (ssh): cannot connect: No route to host; nothing was changed on any host")
    assert sorted(hosts.asked) == ["a", "b", "front"]
    both = Unanswered({"b", "front"})
    with pytest.raises(DeployError, match=r"^front \(ssh\): cannot connect"):
        host_facts(both, both.config, list(both.config.hosts))
