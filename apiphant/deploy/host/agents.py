"""The kit's own programs on a host, in the deployment's folder: supervise.py (Supervisor's
client) and agent.py (what the deploy does there that is a program rather than a one-line
command: the cleanup of old releases, the rotation check). Each activation uploads both,
so they are the deployer's version, whatever release a host goes to; both run on the
host's system Python, standard library only."""

from shlex import quote as q

from apiphant.deploy.layout import SUPERVISOR_CONF, Layout

#: Debian's supervisor package runs on the system Python: its config parser is checked with
#: it, and the kit's programs (standard library only) run on it. Every host of a deployment
#: has Supervisor (the log rotation program runs everywhere), so every host has this Python.
SUPERVISOR_PYTHON = "/usr/bin/python3"


def supervise(layout: Layout, *args: str) -> str:
    """The kit's Supervisor client (apiphant/deploy/supervise.py, uploaded to
    ``layout.supervise``) run by the host's system Python: one Python start of 0.04 s where
    each ``supervisorctl`` is 0.2 s of CPU."""
    script = [SUPERVISOR_PYTHON, layout.supervise, "-c", SUPERVISOR_CONF]
    return " ".join(q(a) for a in [*script, *args])


def agent(layout: Layout, *args: str) -> str:
    """The kit's host agent (apiphant/deploy/agent.py, uploaded to ``layout.agent``) run by
    the host's system Python."""
    return " ".join(q(a) for a in [SUPERVISOR_PYTHON, layout.agent, *args])
