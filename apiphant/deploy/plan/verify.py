"""The verify phase (the smoke tests, on every front and API host) and the finish phase."""

import sys

from apiphant.deploy.config import Config, Host
from apiphant.deploy.host.certbot import https_check
from apiphant.deploy.host.releases import cleanup, in_release, mark_good, smoke_test
from apiphant.deploy.layout import HEALTH_PATH
from apiphant.deploy.plan.steps import TUNNEL, Local, Step, StepKind, staged
from apiphant.settings.schema import env_name


def verify_steps(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    https: bool = True,
    rollback: bool = False,
) -> tuple[Step, ...]:
    """The product's test.py, through each front's Nginx loopback listener, and on every API
    host without Nginx, on its first worker: a front's Nginx spreads the test's requests
    over its pools, so an API host whose release cannot serve could pass unseen. A front
    that runs the product's programs runs it itself, in the release; an Nginx-only front has
    no Python: the deployer runs this repository's test.py (what the release holds) through
    an SSH tunnel to it. With TLS on, /health over HTTPS too, by each domain (not after a
    rollback, ``https=False``: the release gone back to may have served plain HTTP).

    After a rollback (``rollback``) the deployer's test.py may test what only the failed
    release has: an Nginx-only front is checked by /health through the tunnel, and each API
    host gone back runs its own release's test.py on its first worker."""
    steps = []
    fronts = [h for h in hosts if h.has("nginx")]
    backends = [h for h in hosts if h.has("api") and not h.has("nginx")]
    for host in fronts:
        paths = config.layout.release(releases[host.name])
        if config.runs_python(host):
            url, why = config.nginx.local_url, "smoke test through Nginx"
            steps.append(Step(host.name, f"{why}: {config.product}/test.py {url}",
                              smoke_test(paths, config.product, url)))  # fmt: skip
        elif rollback:
            steps.append(tunnel_health(config, host))
        else:
            steps.append(tunnel_smoke_test(config, host))
        if https and config.tls.on:
            issuer = config.layout.acme_chain if config.tls.acme else paths.tls_issuer
            for domain in config.tls.domains:
                steps.append(Step(
                    host.name,
                    f"smoke test over HTTPS: {domain}, its chain verified against its issuer",
                    https_check(config.tls, domain, issuer, releases[host.name]),
                ))  # fmt: skip
    for host in backends:
        paths = config.layout.release(releases[host.name])
        url = "http://" + config.workers(host)[0].address
        why = ("smoke test on the first worker (no Nginx host in this deploy)" if not fronts
               else "smoke test of the release gone back to, on the first worker" if rollback
               else "smoke test of this API host, on its first worker")  # fmt: skip
        steps.append(Step(host.name, f"{why}: {config.product}/test.py {url}",
                          smoke_test(paths, config.product, url)))  # fmt: skip
    return tuple(steps)


#: The URL the smoke test reaches an Nginx-only front by, from the deployer.
TUNNEL_URL = f"http://{TUNNEL}"
#: /health through the tunnel: the front answers, from a worker, with some release (or with
#: status ok alone, from workers that do not trust the front to name the deployment).
HEALTH_SCRIPT = (
    f'import json, os, urllib.request; url = os.environ["APIPHANT_URL"] + "{HEALTH_PATH}"; '
    "answer = json.load(urllib.request.urlopen(url, timeout=10)); "
    'assert answer["status"] == "ok", answer; '
    'print(url, "answers", "release " + answer["release"] if "release" in answer else "ok")'
)


def tunnel_smoke_test(config: Config, host: Host) -> Step:
    """An Nginx-only front's smoke test: the deployer's Python (it runs this deploy, so it
    has apiphant) runs the product's test.py, from the product folder the release was built
    from, against the front's loopback listener through an SSH tunnel."""
    product = config.product_dir
    return Step(
        host.name,
        f"smoke test through Nginx, from the deployer: {config.product}/test.py "
        f"through an SSH tunnel to {host.name}'s {config.nginx.local_url}",
        local=Local((sys.executable, f"{product.name}/test.py"), str(product.parent),
                    config.nginx.local_port, ((env_name("url"), TUNNEL_URL),)),
    )  # fmt: skip


def tunnel_health(config: Config, host: Host) -> Step:
    """After a rollback, an Nginx-only front: it answers /health through its Nginx."""
    return Step(
        host.name,
        f"check through Nginx, from the deployer: /health through an SSH tunnel to "
        f"{host.name}'s {config.nginx.local_url}",
        local=Local((sys.executable, "-c", HEALTH_SCRIPT), str(config.product_dir.parent),
                    config.nginx.local_port, ((env_name("url"), TUNNEL_URL),)),
    )  # fmt: skip


def finish_steps(config: Config, hosts: list[Host], release: str) -> tuple[Step, ...]:
    layout = config.layout
    paths = layout.release(release)
    steps = []
    for host in hosts:
        steps.append(Step(host.name, f"mark release {release} good", mark_good(paths)))
        steps.append(
            Step(
                host.name,
                f"keep the {config.keep_releases} newest good releases; failed ones go",
                cleanup(layout, config.keep_releases),
            )
        )
    after = []
    first_api = next((h for h in hosts if h.has("api")), None)
    if config.after_deploy and first_api is not None:
        after.append(
            Step(
                first_api.name,
                f"after_deploy, once: {config.after_deploy}",
                in_release(paths.dir, layout.user, config.after_deploy),
                timeout=3600,
                kind=StepKind.REPORT,
            )
        )
    # Hosts side by side; after_deploy once every host has marked the release good.
    return tuple(staged([steps, after]))
