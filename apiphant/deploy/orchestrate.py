"""The policy of a run: steps host beside host, a plan's phases in order under the deploy
lock, and what a failure means (each phase's flags say: a rollback of the switched
hosts, and who serves what after it). It runs on a ``console.Hosts``: the hosts, or the
dry run; it names no phase."""

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from apiphant.deploy.config import Config, Host
from apiphant.deploy.console import Hosts, heading, say
from apiphant.deploy.errors import DeployError
from apiphant.deploy.host import releases
from apiphant.deploy.host.releases import Releases
from apiphant.deploy.plan import Phase, Plan, Step, StepKind, by_host, stages
from apiphant.deploy.target import UsageError


@dataclass
class Outcome:
    """What a run did, for the final line and the exit status."""

    ok: bool
    message: str


def each_at_once(calls: list[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
    """One small call per host (a lock, a query), all hosts side by side: what each returned,
    or the DeployError it raised, by host in the given order. On ten hosts a command each,
    one after another, is ten round trips; side by side it is one."""

    def one(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except DeployError as error:
            return error

    if len(calls) <= 1:
        return {host: one(call) for host, call in calls}
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="apiphant-host") as pool:
        answers = list(pool.map(one, [call for _, call in calls]))
    return dict(zip([host for host, _ in calls], answers, strict=True))


def run_steps(executor: Hosts, steps: tuple[Step, ...] | list[Step], switched: set[str]) -> None:
    """Each step in turn; a StepKind.REPORT step's failure is said and the steps go on."""
    for step in steps:
        if step.switch:
            switched.add(step.host)
        try:
            executor.run(step)
        except DeployError as error:
            if step.kind is not StepKind.REPORT:
                raise
            executor.out(f"[{step.host}] FAILED, reported and not rolled back: {error}")


def run_side_by_side(
    executor: Hosts,
    steps: tuple[Step, ...] | list[Step],
    parallel: int = 0,
    switched: set[str] | None = None,
) -> None:
    """Each host's steps in order, hosts side by side (at most ``parallel`` at once, 0: all):
    preparing ten hosts takes as long as preparing the slowest. A failure stops the other
    hosts at their next step; once all have stopped, the first failure (in config order)
    is raised, naming the others that failed too."""
    switched = set() if switched is None else switched
    hosts = by_host(steps)
    width = min(parallel or len(hosts), len(hosts))
    if width <= 1:
        run_steps(executor, steps, switched)
        return
    stop = threading.Event()
    failures: dict[str, DeployError] = {}

    def one_host(host: str) -> None:
        for step in hosts[host]:
            if stop.is_set():
                return
            try:
                run_steps(executor, [step], switched)
            except DeployError as error:
                failures[host] = error
                stop.set()
                return

    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="apiphant-host") as pool:
        list(pool.map(one_host, hosts))
    if failures:
        first = next(h for h in hosts if h in failures)
        others = [h for h in hosts if h in failures and h != first]
        if not others:
            raise failures[first]
        raise DeployError(f"{failures[first]}; failed too: " + ", ".join(
            str(failures[h]) for h in others))  # fmt: skip


def run_staged(
    executor: Hosts,
    steps: tuple[Step, ...] | list[Step],
    switched: set[str],
    parallel: int = 0,
) -> None:
    """A phase's stages one after another, each stage's hosts side by side."""
    for stage in stages(steps):
        run_side_by_side(executor, stage, parallel, switched)


def current_releases(executor: Hosts, config: Config, hosts: list[Host]) -> dict[str, str]:
    """The release each host serves (asked of all at once), "" where none is."""
    command = releases.current_release(config.layout)
    answers = each_at_once([
        (h.name, lambda name=h.name: executor.query(name, command, "which release is current"))
        for h in hosts
    ])  # fmt: skip
    found = {}
    for host, answer in answers.items():
        if isinstance(answer, DeployError):
            raise answer
        found[host] = releases.parse_current(answer)
    return found


def good_releases(executor: Hosts, config: Config, host: Host) -> Releases:
    """(release, good, current) on one host, newest first."""
    return releases.parse_releases(
        executor.query(host.name, releases.releases(config.layout), "list releases")
    )


def all_releases(
    executor: Hosts, config: Config, hosts: list[Host], why: str = "list releases"
) -> dict[str, Releases | DeployError]:
    """Every host's releases, asked of all at once; a host that cannot answer, its error.
    A host lost earlier in this run is not asked again (that would wait out a connect
    timeout to learn what is known): its error says it was lost."""
    command = releases.releases(config.layout)
    asked = [h.name for h in hosts if h.name not in executor.lost]
    answers = each_at_once([
        (name, lambda name=name: releases.parse_releases(executor.query(name, command, why)))
        for name in asked
    ])  # fmt: skip
    return {
        h.name: answers[h.name] if h.name in answers
        else DeployError(f"{h.name}: {executor.lost[h.name]}")
        for h in hosts
    }  # fmt: skip


def serving_lines(found: dict[str, Releases | DeployError]) -> tuple[bool, list[str]]:
    """Which host serves which release, one line each, and whether they all serve one
    (a host that could not say counts as differing). Pure: ``fab status`` and a deploy or
    rollback that failed part way print it."""
    width = max((len(host) for host in found), default=0)
    served: set[str] = set()
    lines = []
    for host, rows in found.items():
        if isinstance(rows, DeployError):
            served.add("?")
            reason = str(rows).removeprefix(f"{host}: ")
            lines.append(f"  {host:<{width}}  unknown: {reason}")
            continue
        current = next(((r, good) for r, good, is_current in rows if is_current), None)
        if current is None:
            served.add("")
            lines.append(f"  {host:<{width}}  none")
            continue
        served.add(current[0])
        note = "" if current[1] else " (failed: it never passed a deploy)"
        lines.append(f"  {host:<{width}}  {current[0]}{note}")
    return len(served) == 1 and "?" not in served, lines


#: What to do about hosts on different releases; said wherever it is found.
CONVERGE = "the next fab deploy, or fab rollback, brings every host to one release"


def report_serving(executor: Hosts, config: Config, hosts: list[Host]) -> bool:
    """Print which host serves which release, loudly when they differ; True when one."""
    one, lines = serving_lines(all_releases(executor, config, hosts, "which release it serves"))
    if one:
        say(executor.out, "every host serves one release:")
    else:
        say(executor.out, f"HOSTS SERVE DIFFERENT RELEASES ({CONVERGE}):")
    for line in lines:
        executor.out(line)
    return one


def run_every_host(
    executor: Hosts, steps: tuple[Step, ...] | list[Step], failures: dict[str, DeployError]
) -> None:
    """A rollback's phase: its stages in order, each stage's hosts side by side, and every
    host as far as it gets. A host that failed (in this phase or an earlier one: its error
    is in ``failures``) runs none of its later steps; the others go on. One host that
    stopped answering must not leave the others on the release being rolled back."""
    for stage in stages(steps):
        hosts = {h: mine for h, mine in by_host(stage).items() if h not in failures}
        calls = [(h, partial(run_steps, executor, mine, set())) for h, mine in hosts.items()]
        for host, got in each_at_once(calls).items():
            if isinstance(got, DeployError):
                failures[host] = got


def _run_each(executor: Hosts, steps: tuple[Step, ...] | list[Step]) -> dict[str, Any]:
    """One step per host, all at once (``each_at_once``): what each returned or raised."""
    return each_at_once([(step.host, lambda step=step: executor.run(step)) for step in steps])


@contextmanager
def locked(executor: Hosts, lock: tuple[Step, ...], unlock: tuple[Step, ...]) -> Iterator[None]:
    """THE lock policy: take each host's lock, all hosts at once (a held one stops
    everything, once every other host has answered), act, and release every lock taken,
    also on failure, all at once; a failed release is reported, never hides the result."""
    held: set[str] = set()
    try:
        if lock:
            say(executor.out, "lock: " + ", ".join(step.host for step in lock))
        taken = _run_each(executor, lock)
        held.update(host for host, got in taken.items() if not isinstance(got, DeployError))
        failed = [got for got in taken.values() if isinstance(got, DeployError)]
        if failed:
            raise failed[0]
        yield
    finally:
        released = _run_each(executor, [step for step in unlock if step.host in held])
        for host, got in released.items():
            if isinstance(got, DeployError):
                executor.out(f"[{host}] could not release the deploy lock: {got}")


def run_phase(executor: Hosts, phase: Phase, switched: set[str], parallel: int = 0) -> None:
    """A phase's steps as the phase says: staged (hosts side by side, ``parallel`` at most)
    or one after another."""
    if phase.staged:
        run_staged(executor, phase.steps, switched, parallel)
    else:
        run_steps(executor, phase.steps, switched)


def execute(
    plan: Plan,
    executor: Hosts,
    rollback: Callable[[dict[str, str]], Plan],
    hosts: list[Host],
    config: Config,
    parallel: int = 0,
) -> Outcome:
    """Run a deploy plan's phases in order under the lock, hosts side by side (``parallel``
    at most, 0: all). Before the first phase that rolls back, ask each host what it serves;
    on a failure in such a phase, roll the switched hosts back to that (``_roll_back``), and
    say which host serves which release."""
    out = executor.out
    switched: set[str] = set()
    lasting = ""  # a phase whose changes a failure leaves (the release command) started
    outcome: Outcome | None = None
    try:
        with locked(executor, plan.lock, plan.unlock):
            previous: dict[str, str] | None = None
            for phase in plan.phases:
                if phase.rolls_back and previous is None:
                    previous = current_releases(executor, config, hosts)
                say(out, heading(phase, plan))
                if phase.lasting:
                    lasting = heading(phase, plan)
                try:
                    run_phase(executor, phase, switched, parallel)
                except DeployError as error:
                    if not phase.rolls_back:
                        raise
                    outcome = _roll_back(error, executor, rollback, previous or {}, switched,
                                         plan, untouched(lasting))  # fmt: skip
                    break
            else:
                outcome = Outcome(True, f"release {plan.release} is live on "
                                  + ", ".join(plan.hosts))  # fmt: skip
    except DeployError as error:
        where = untouched(lasting) if not switched else "after the switch"
        outcome = Outcome(False, f"deploy of {plan.release} failed, {where}: {error}")
    assert outcome is not None  # every way out of the lock above set it
    if not outcome.ok and switched:
        report_serving(executor, config, hosts)
    return outcome


def untouched(lasting: str = "") -> str:
    """What a deploy that failed before any switch left live. Its prepare writes only into
    the new release's folder (its secrets too), so nothing a live program reads changed;
    a phase whose changes last (``lasting``: the release command) that started may have
    changed data, and that is not undone."""
    if lasting:
        return f"nothing was switched (what the {lasting} changed before it failed stays)"
    return "nothing was switched, nothing live was touched"


def _roll_back(
    error: DeployError,
    executor: Hosts,
    rollback: Callable[[dict[str, str]], Plan],
    previous: dict[str, str],
    switched: set[str],
    plan: Plan,
    unswitched: str = "",
) -> Outcome:
    """Every switched host back to what it served before, each as far as it gets; a host
    lost in this run is left out (activating a host that comes and goes would leave it
    half on each release), and said."""
    out = executor.out
    failed = f"deploy of {plan.release} failed: {error}"
    if not switched:
        return Outcome(False, f"{failed}; {unswitched or untouched()}")
    lost = sorted(h for h in switched if h in executor.lost)
    targets = {h: previous.get(h, "") for h in sorted(switched) if h not in executor.lost}
    missing = sorted(h for h, r in targets.items() if not r)
    if missing:
        return Outcome(
            False,
            f"{failed}; no previous release on {', '.join(missing)} to roll back to: "
            f"release {plan.release} stays there",
        )
    say(out, f"{failed}")
    left = f"; not {', '.join(lost)}: connection lost" if lost else ""
    say(out, "rolling back: " + ", ".join(f"{h} to {r}" for h, r in targets.items()) + left)
    failures: dict[str, DeployError] = {}
    if targets:
        for phase in rollback(targets).phases:
            run_every_host(executor, phase.steps, failures)
    done = [h for h in targets if h not in failures]
    parts = []
    if done:
        again = ", ".join(f"{h} serves {targets[h]} again" for h in done)
        parts.append(f"ROLLED BACK: {again} (its workers answer /health with it, and its "
                     "smoke test passes)")  # fmt: skip
    parts += [f"the rollback failed on {failures[h]}" for h in targets if h in failures]
    parts += [f"NOT ROLLED BACK: {h}: {executor.lost[h]}" for h in lost]
    return Outcome(False, f"{failed}; " + "; ".join(parts))


# fab rollback's rule; the automatic rollback's (what each host served before) is above.


def _current(rows: Releases) -> str:
    return next((r for r, _, is_current in rows if is_current), "")


def rollback_targets(rows: dict[str, Releases], wanted: str = "") -> dict[str, str]:
    """THE rule for ``fab rollback``'s release on each host, from each host's releases
    (newest first: release, good, current):

    - a named release (``wanted``): on every host, if it passed a deploy there;
    - hosts that serve one release: on each, the newest good release older than it;
    - hosts that serve different releases (a deploy that failed part way, a rollback of
      some hosts): one release for all, the newest that passed a deploy on every host and
      is no newer than the oldest one served. The rollback ends with every host on it."""
    currents = {host: _current(rs) for host, rs in rows.items()}
    if wanted:
        for host, rs in rows.items():
            if not any(r == wanted for r, _, _ in rs):
                known = ", ".join(r for r, good, _ in rs if good) or "none"
                raise UsageError(f"{host}: no release {wanted} (good releases: {known})")
            if not any(good for r, good, _ in rs if r == wanted):
                raise UsageError(f"{host}: release {wanted} never passed a deploy; deploy instead")
        return {host: wanted for host in rows}
    if len(set(currents.values())) > 1:
        served = ", ".join(f"{h} {r or 'none'}" for h, r in currents.items())
        oldest = min((r for r in currents.values() if r), default="")
        good = [{r for r, ok, _ in rs if ok and r <= oldest} for rs in rows.values()]
        common = set.intersection(*good) if good else set()
        if not common:
            raise UsageError(f"hosts serve different releases ({served}) and none that passed "
                             "a deploy on every one of them is older: deploy instead")  # fmt: skip
        return {host: max(common) for host in rows}
    targets = {}
    for host, rs in rows.items():
        current = currents[host]
        older = [r for r, good, _ in rs if good and (not current or r < current)]
        if not older:
            raise UsageError(f"{host}: no good release before {current or 'none'} to roll back to")
        targets[host] = older[0]
    return targets
