"""Shell composition: the glue between one-line commands, and quoting."""

from shlex import quote as q


def join(*commands: str) -> str:
    """``a && b``; a command list (with ``;``) is grouped so ``&&`` applies to all of it."""
    return " && ".join(f"{{ {c}; }}" if ";" in c else c for c in commands)


def systemd_or(service: str, direct: str) -> str:
    """Start a service with systemd when it runs the host, else directly (containers)."""
    return f"if [ -d /run/systemd/system ]; then systemctl start {q(service)}; else {direct}; fi"


def side_by_side(each: list[str]) -> str:
    """Commands at once, each in its own subshell; fails if any one fails."""
    if len(each) == 1:
        return each[0]
    started = "".join(f'( {command} ) & pids="$pids $!"; ' for command in each)
    return f"pids=; {started}rc=0; for p in $pids; do wait $p || rc=1; done; [ $rc = 0 ]"
