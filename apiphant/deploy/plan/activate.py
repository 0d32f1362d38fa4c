"""The release command, and the activation: switch, link, reload, the rolling restart."""

from importlib import resources
from shlex import quote as q

from apiphant.deploy import roles
from apiphant.deploy.config import Config, Host
from apiphant.deploy.host.certbot import obtain_certificate
from apiphant.deploy.host.configs import link
from apiphant.deploy.host.nginx import nginx_check_live, nginx_ready
from apiphant.deploy.host.releases import in_release, switch
from apiphant.deploy.host.supervisor import supervisor_ready, supervisor_sync
from apiphant.deploy.plan.rolling import agent_step, rolling_restart
from apiphant.deploy.plan.steps import Step, StepKind, Upload, staged

#: The kit's Supervisor client, uploaded to every host by every activation.
SUPERVISE = (resources.files("apiphant.deploy") / "supervise.py").read_bytes()
#: The nginx role's rendered files: Nginx is reloaded when either changed.
NGINX_FILES = ("nginx-main.conf", "nginx.conf")


#: Where a product keeps its migrations (apiphant db migrate reads them).
MIGRATIONS = "migrations"


def migrates(config: Config) -> bool:
    """Whether a deploy migrates the database: the product has migrations and a database."""
    return config.has_database() and (config.product_dir / MIGRATIONS).is_dir()


def release_phase_steps(config: Config, hosts: list[Host], release: str) -> tuple[Step, ...]:
    """Once, on the first API host, in the new release, before any worker switches: the
    product's migrations (``apiphant db migrate``, when it has them and a database), then
    deploy.toml's ``release`` command. A failure leaves the live release serving."""
    first_api = next((h for h in hosts if h.has("api")), None)
    if first_api is None:
        return ()
    paths = config.layout.release(release)
    steps = []
    if migrates(config):
        migrate = f"apiphant db migrate {q(config.product)}"
        steps.append(Step(first_api.name, f"migrations, once, in release {release}: {migrate}",
                          in_release(paths.dir, config.layout.user, migrate), timeout=3600,
                          kind=StepKind.REASON))  # fmt: skip
    if config.release_command:
        steps.append(Step(
            first_api.name,
            f"release command, once, in release {release}: {config.release_command}",
            in_release(paths.dir, config.layout.user, config.release_command),
            timeout=3600,
        ))  # fmt: skip
    return tuple(steps)


def _links(config: Config, host: Host, all_roles: dict[str, roles.Role]) -> tuple[dict, list]:
    """The links this host's roles make, and those to remove: the other roles' links, and
    what this host's roles unlink."""
    layout = config.layout
    host_roles = roles.for_host(config.role_names(host), all_roles)
    used = roles.links(host_roles, layout)
    every = roles.links(list(all_roles.values()), layout)
    unused = set(every.values()) - set(used.values()) | set(roles.unlinks(host_roles, layout))
    return used, sorted(unused)


def activate_steps(
    config: Config,
    hosts: list[Host],
    releases: dict[str, str],
    all_roles: dict[str, roles.Role],
    obtain: bool = True,
) -> tuple[Step, ...]:
    """Make ``releases[host]`` live on each host: switch, link, reload, rolling restart.

    In stages, hosts side by side within each: hosts without Nginx switch first, then the
    fronts, so a front switches once its backends have; then the rolling restart; then
    Supervisor's programs are matched to the config. With tls = "acme" each front gets its
    certificate before its 443 server goes live (not on a rollback, ``obtain=False``: the
    release it goes back to was served before).
    """
    layout = config.layout
    switch_stages: list[list[Step]] = [[], []]
    for host in hosts:
        steps = switch_stages[host.has("nginx")]
        paths = layout.release(releases[host.name])
        used, unused = _links(config, host, all_roles)
        services = roles.services(roles.for_host(config.role_names(host), all_roles))
        steps.append(
            Step(
                host.name,
                f"make release {paths.release_id} current",
                switch(paths),
                switch=True,
            )
        )
        if obtain and config.renews(host):
            steps.append(obtain_step(config, host, used, all_roles))
        steps.append(
            Step(
                host.name,
                "link configs into /etc",
                link(used, unused, layout.current_config),
            )
        )
        if config.tls.on and host.has("nginx"):
            steps.append(Step(host.name, "check: nginx -t, with the certificate",
                              nginx_check_live()))  # fmt: skip
        # Every host: one that lost its programs' roles has them removed by it (the sync).
        steps.append(Step(host.name, "the kit's Supervisor client", upload=Upload(
            layout.supervise, 0o644, "supervise.py", content=SUPERVISE)))  # fmt: skip
        steps.append(agent_step(layout, host.name))
        if "supervisor" in services:
            steps.append(Step(host.name, "supervisord: start if not running",
                              supervisor_ready(layout)))  # fmt: skip
        if "nginx" in services:
            nginx_files = [f"{layout.current_config}/{n}" for n in NGINX_FILES]
            steps.append(
                Step(
                    host.name,
                    "nginx: reload if its config changed, or start",
                    nginx_ready(nginx_files, layout.nginx_loaded),
                )
            )
    sync = [
        Step(
            host.name,
            "supervisor: add and remove programs to match the config",
            supervisor_sync(layout, config.programs(host)),
        )
        for host in hosts
    ]
    restarts, checks = rolling_restart(config, hosts, releases)
    # A host's steps of one stage run in order: the background program's check, then the sync.
    return tuple(staged([*switch_stages, *restarts, checks + sync]))


def obtain_step(
    config: Config, host: Host, used: dict[str, str], all_roles: dict[str, roles.Role]
) -> Step:
    """certbot through Nginx (HTTP-01); the first time, Nginx serves port 80 alone first."""
    layout = config.layout
    http_site = {("nginx-http.conf" if n == "nginx.conf" else n): target
                 for n, target in used.items() if n in NGINX_FILES}  # fmt: skip
    first = [f"{layout.current_config}/{n}" for n in ("nginx-main.conf", "nginx-http.conf")]
    unlinks = roles.unlinks(roles.for_host(config.role_names(host), all_roles), layout)
    return Step(
        host.name,
        f"certificate for {', '.join(config.tls.domains)} from {config.tls.acme_server} "
        "(certbot, HTTP-01 through Nginx)",
        obtain_certificate(layout, config.tls, http_site, unlinks, first),
        timeout=600,
        kind=StepKind.REASON,
    )
