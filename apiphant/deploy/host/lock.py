"""The per-host deploy lock: taking it, releasing it, and what a held one says."""

from shlex import quote as q

from apiphant.deploy.layout import Layout

#: Exit status of the lock command when another deploy holds the lock.
LOCKED = 75


def lock(layout: Layout, holder: str) -> str:
    """Take the per-host deploy lock (mkdir is atomic) or say who holds it."""
    return (
        f"mkdir -p {q(layout.root)} && "
        f"if mkdir {q(layout.lock)} 2>/dev/null; then "
        f"printf '%s\\n' {q(holder)} > {q(layout.holder)}; "
        f'else echo "held by $(cat {q(layout.holder)} 2>/dev/null || echo unknown)"; '
        f"exit {LOCKED}; fi"
    )


def unlock(layout: Layout) -> str:
    """Remove the lock, saying whose it was (for ``fab unlock``: who it interrupts)."""
    return (
        f"if [ -d {q(layout.lock)} ]; then echo \"removed the lock of "
        f'$(cat {q(layout.holder)} 2>/dev/null || echo unknown)"; '
        f"rm -rf {q(layout.lock)}; else echo 'no lock held'; fi"
    )
