"""The per-host deploy lock: taking it, releasing it, its state for ``fab status``, and
what a held one says (its holder, and the advice for a lock whose deploy died)."""

from shlex import quote as q

from apiphant.deploy.layout import Layout

#: Exit status of the lock command when another deploy holds the lock.
LOCKED = 75
#: What the lock command says, before the holder, when another deploy holds the lock.
HELD = "held by "


def lock(layout: Layout, holder: str) -> str:
    """Take the per-host deploy lock (mkdir is atomic) or say who holds it."""
    return (
        f"mkdir -p {q(layout.root)} && "
        f"if mkdir {q(layout.lock)} 2>/dev/null; then "
        f"printf '%s\\n' {q(holder)} > {q(layout.holder)}; "
        f'else echo "{HELD}$(cat {q(layout.holder)} 2>/dev/null || echo unknown)"; '
        f"exit {LOCKED}; fi"
    )


def unlock(layout: Layout) -> str:
    """Remove the lock, saying whose it was (for ``fab unlock``: who it interrupts)."""
    return (
        f"if [ -d {q(layout.lock)} ]; then echo \"removed the lock of "
        f'$(cat {q(layout.holder)} 2>/dev/null || echo unknown)"; '
        f"rm -rf {q(layout.lock)}; else echo 'no lock held'; fi"
    )


def state(layout: Layout) -> str:
    """The lock's line of ``fab status``: free, or who holds it."""
    return (
        f'if [ -d {q(layout.lock)} ]; then echo "lock: {HELD}$(cat {q(layout.holder)})";'
        " else echo 'lock: free'; fi"
    )


def parse_held(stdout: str) -> str:
    """The holder, from what ``lock`` said when it exited with ``LOCKED``."""
    return stdout.strip().removeprefix(HELD)


def held_message(host: str, holder: str, product: str) -> str:
    """A held lock in one line, with what to do when the deploy that holds it died."""
    return (
        f"{host}: the deploy lock is held by {holder}; wait for that deploy, or if "
        f"it died: fab unlock --product={product} {host}"
    )
