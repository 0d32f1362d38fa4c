"""The rolling restart: the API workers in batches per pool, never a whole pool at once."""

from importlib import resources

from apiphant.deploy.config import Config, Host, Pool, Worker
from apiphant.deploy.host.nginx import in_rotation
from apiphant.deploy.host.shell import join
from apiphant.deploy.host.supervisor import restart_background, restart_workers
from apiphant.deploy.layout import Layout
from apiphant.deploy.plan.steps import Step, Upload

#: The kit's host agent (cleanup, rotation check), uploaded beside supervise.py.
AGENT = (resources.files("apiphant.deploy") / "agent.py").read_bytes()


def agent_step(layout: Layout, host: str) -> Step:
    """The kit's host agent onto ``host``, before a step there runs it: this deploy's, as a
    host may have an older kit's."""
    return Step(host, "the kit's host agent", upload=Upload(
        layout.agent, 0o644, "agent.py", content=AGENT))  # fmt: skip


def batches(config: Config, hosts: list[Host]) -> list[list[list[Worker]]]:
    """The chosen workers in batches, ``[group][batch] -> workers``: pools that share a
    host restart as one group (a worker restarts once), groups side by side. A batch is
    ``config.batch`` of the group's smallest pool, so it never holds a whole pool."""
    chosen = {h.name for h in hosts}
    groups: list[tuple[set[str], list[Pool]]] = []
    for pool in config.pools:
        joined = [g for g in groups if g[0] & set(pool.hosts)]
        merged = (set(pool.hosts).union(*(g[0] for g in joined)),
                  [p for g in joined for p in g[1]] + [pool])  # fmt: skip
        groups = [g for g in groups if g not in joined] + [merged]
    every = []
    for _, pools in sorted(groups, key=lambda g: config.pools.index(g[1][0])):
        size = min(config.batch.size(len(config.pool_workers(p))) for p in pools)
        workers = list({w.address: w for p in pools for w in config.pool_workers(p)}.values())
        mine = [w for w in workers if w.host in chosen]
        every.append([mine[i : i + size] for i in range(0, len(mine), size)])
    return every


def rolling_restart(
    config: Config, hosts: list[Host], releases: dict[str, str]
) -> tuple[list[list[Step]], list[Step]]:
    """The API workers in batches per pool, pools side by side (``batches``); never a whole
    pool at once. Returns the stages, and the steps that check afterwards what they only
    started: the background runner serves no traffic, so its start (Supervisor's
    ``startsecs`` until RUNNING, a second) holds up no batch.

    A batch's workers restart together, each host's in one step, and each is checked on
    its own /health until it answers the new release; then every front's Nginx must send
    it requests again (``host.nginx.in_rotation``) before the pool's next batch restarts.
    Nginx is not reloaded for this: a reload makes its old workers close busy client
    connections, which a client reusing them sees as an error. Instead a restarting worker
    drains (it stops accepting, so Nginx's connects are refused and tried on the next
    worker, safe even for a create), and Nginx takes it back at most ``back_within``
    seconds after a refusal: the check waits for exactly that, and not at all when nothing
    was refused.
    """
    layout = config.layout
    nginx = config.nginx
    fronts = [h for h in config.hosts if h.has("nginx")]
    pools_of: dict[str, list[str]] = {}
    workers_of: dict[str, list[Worker]] = {}
    for pool in config.pools:
        workers_of[pool.name] = config.pool_workers(pool)
        for w in workers_of[pool.name]:
            pools_of.setdefault(w.address, []).append(pool.name)
    groups = batches(config, hosts)
    # The background runner restarts beside the first batch restarted on its host, or in
    # the first stage on a host of its own; it is checked once the batches are done.
    beside: dict[str, tuple[str, str]] = {}
    checks: list[Step] = []
    background = config.background_host()
    if background is not None and background.name in {h.name for h in hosts}:
        program, release = layout.background, releases[background.name]
        beside[background.name] = (f"restart {program} (checked after the batches)",
                               restart_background(layout, program, release,
                                                  layout.log(program), wait=False))
        checks.append(Step(background.name, f"{program} runs release {release}",
                           restart_background(layout, program, release,
                                              layout.log(program))))  # fmt: skip
    stages: list[list[Step]] = []
    # A front outside this deploy checks the rotation too: with the agent of this deploy.
    outside = [front for front in fronts if front.name not in releases]
    for n in range(max((len(g) for g in groups), default=0)):
        batch = [w for group in groups if n < len(group) for w in group[n]]
        restarts = []
        for host in hosts:
            mine = [w for w in batch if w.host == host.name]
            if not mine:
                continue
            release = releases[host.name]
            why = (f"restart {', '.join(w.program for w in mine)}; "
                   f"wait for /health to answer release {release}")  # fmt: skip
            also = beside.pop(host.name, None)
            restarts.append(Step(
                host.name,
                f"{why}; {also[0]}" if also else why,
                restart_workers(
                    layout, [(w.program, w.address, layout.log(w.program)) for w in mine], release,
                    [also[1]] if also else []),
            ))  # fmt: skip
        stages.append(restarts)
        uploads = [agent_step(layout, front.name) for front in outside] if n == 0 else []
        stages.append(uploads + [
            Step(
                front.name,
                f"Nginx sends requests to {', '.join(w.address for w in batch)} again "
                f"(at most {nginx.back_within}s after a refusal)",
                join(*[
                    in_rotation(layout, nginx.rotation_url(pool), nginx.rotation_host,
                                nginx.rotation_header, w.address, nginx.back_within,
                                rounds=len(workers_of[pool]))
                    for w in batch for pool in pools_of[w.address]
                ]),
                timeout=(nginx.back_within + 10) * len(batch) * len(config.pools) + 60,
            )
            for front in fronts
        ])  # fmt: skip
    for name, (why, command) in beside.items():
        if not stages:
            stages.append([])
        stages[0].append(Step(name, why, command))
    return stages, checks
