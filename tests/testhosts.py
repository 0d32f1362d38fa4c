"""Separate test hosts on this machine, without a container daemon: the multi-host tests'.

Each host is its own network namespace with a private address on a bridge
this module creates (10.x, derived from the test runner's pid so that
concurrent runs do not meet), its own mount, PID, UTS and IPC namespaces,
and its own root: an overlayfs whose lower layer is one Debian bookworm tree
(``mmdebstrap``, built once and cached under /var/cache/apiphant-test-hosts,
keyed by its package list) and whose upper layer is the host's own, so each
host has its own /etc, /opt and /var/log. Its first process is a small
init (reaps orphans) that runs the host's sshd; the deploy kit starts
supervisord and Nginx itself, as on a real host without systemd. The hosts
have no route out: the deployer, in the root namespace, reaches them by SSH
on their private addresses, as it would reach machines on a LAN.

Everything made is recorded and removed by ``Hosts.close()``: processes by
recorded PID (and start time, so a recycled PID is never killed), the
namespaces (the overlay and /proc mounts live in each host's own mount
namespace and go with it), veths, bridge and the upper layers.
"""

import fcntl
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.deploy_helpers import port_open

SUITE = "bookworm"
#: What a host has, besides Debian's apt variant: what the kit's roles install (so apt-get
#: has nothing to do), sshd, and the tools a test runs in a host.
PACKAGES = (
    "python3", "python3-venv", "openssh-server", "sudo", "nginx", "supervisor", "curl",
    "mount", "iputils-ping", "procps", "logrotate", "iproute2", "ca-certificates", "zstd",
)  # fmt: skip
CACHE = Path("/var/cache/apiphant-test-hosts")
#: Every name this module gives a namespace, link or folder starts with this.
PREFIX = "aph"
SSH_PORT = 22
#: Started as the host's PID 1 (with a clean environment): runs sshd, reaps every orphan
#: (supervisord and Nginx daemonize into it), exits on SIGTERM, which ends the namespace.
INIT = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"])
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
"""
#: Runs in the new namespaces, as their PID 1, before the pivot: $1 base, $2 host folder,
#: $3 host name. Then it becomes the init above.
SETUP = r"""
set -eu
base=$1; dir=$2; name=$3
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$base,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
r=$dir/root
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$r/dev"
for d in null zero full random urandom tty; do
  touch "$r/dev/$d"; mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
hostname "$name"
cd "$r"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
cd /
mkdir -p /run/sshd
ssh-keygen -A >/dev/null
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 /usr/bin/python3 /usr/local/sbin/test-host-init
"""
SSHD_CONFIG = """\
ListenAddress {address}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxStartups 50:30:100
MaxSessions 50
"""


class HostError(RuntimeError):
    """A test host could not be built or started."""


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise HostError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return done


# The base tree


def base_key(packages: tuple[str, ...] = PACKAGES) -> str:
    return hashlib.sha256(f"{SUITE} {' '.join(sorted(packages))}".encode()).hexdigest()[:16]


def base_tree(packages: tuple[str, ...] = PACKAGES) -> Path:
    """The shared Debian tree, built with mmdebstrap the first time (about 30 s), then
    reused; a lock file makes concurrent runs build it once. No SSH host keys: each host
    makes its own."""
    folder = CACHE / base_key(packages)
    tree = folder / "root"
    if (folder / "ready").exists():
        return tree
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "ready").exists():
            return tree
        building = folder / f"building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(tree, ignore_errors=True)
        try:
            run("mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(packages)}",
                SUITE, str(building), timeout=900)  # fmt: skip
            for key in (building / "etc" / "ssh").glob("ssh_host_*"):
                key.unlink()
            building.rename(tree)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        (folder / "ready").write_text(" ".join(packages) + "\n")
    return tree


# Processes, by PID and start time


def start_time(pid: int) -> str:
    """The PID's start time (clock ticks after boot), '' when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def alive(pid: int, started: str) -> bool:
    """The same process still exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    return fields[19] == started and fields[0] != "Z"


def kill(pid: int, started: str, sig: int = signal.SIGKILL) -> None:
    if pid and started and alive(pid, started):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def in_namespace(ns_inode: str) -> list[int]:
    """Live (non-zombie) processes whose PID namespace is ``ns_inode``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") != ns_inode:
                continue
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


class Host:
    """One test host: name, private address, and its init's PID (in the root namespace)."""

    def __init__(self, hosts: "Hosts", index: int, name: str) -> None:
        self.hosts = hosts
        self.name = name
        self.index = index
        self.address = str(hosts.network.network_address + 10 + index)
        self.netns = f"{hosts.tag}h{index}"
        self.veth = f"{hosts.tag}v{index}"  # the bridge side
        self.folder = hosts.folder / name
        self.proc: subprocess.Popen | None = None
        self.init_pid = 0
        self.init_started = ""
        self.pid_ns = ""

    @property
    def ssh(self) -> str:
        return f"root@{self.address}"

    def path(self, path: str) -> Path:
        """A path inside the running host, as its own processes see it."""
        return Path(f"/proc/{self.init_pid}/root") / path.lstrip("/")

    def read(self, path: str) -> str:
        return self.path(path).read_text(errors="replace")

    def exec(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A shell command inside the host (all its namespaces), as root, not over SSH."""
        return subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", "--", "/usr/bin/env", "-i",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "/bin/sh", "-c", command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def cut(self) -> None:
        """Take the host off the bridge, as a pulled cable (its own side stays up)."""
        run("ip", "link", "set", self.veth, "down")

    def restore(self) -> None:
        run("ip", "link", "set", self.veth, "up")

    # Life

    def start(self, base: Path, key: str, timeout: float = 30) -> None:
        self._network()
        self._layers(key)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--uts",
             "--ipc", "--pid", "--fork", "--kill-child", "--", "/bin/sh", "-c", SETUP,
             "setup", str(base), str(self.folder), self.name],
            stdin=subprocess.DEVNULL, stdout=self.hosts.console(self),
            stderr=subprocess.STDOUT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if not self.init_pid:
                self._find_init()
            if self.init_pid and port_open(self.address, SSH_PORT):
                return
            if self.proc.poll() is not None:
                raise HostError(f"{self.name}: exited {self.proc.returncode}: {self.console()}")
            if time.monotonic() > deadline:
                raise HostError(f"{self.name}: no sshd after {timeout}s: {self.console()}")
            time.sleep(0.05)

    def console(self) -> str:
        try:
            return (self.folder / "console.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def _find_init(self) -> None:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return
        for pid in map(int, children.split()):
            started = start_time(pid)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if started and b"test-host-init" in cmdline:
                self.init_pid, self.init_started = pid, started
                self.pid_ns = os.readlink(f"/proc/{pid}/ns/pid")
                (self.folder / "init.pid").write_text(f"{pid} {started}\n")

    def _network(self) -> None:
        h = self.hosts
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", f"{self.veth}p",
            "netns", self.netns)  # fmt: skip
        run("ip", "link", "set", self.veth, "master", h.bridge)
        run("ip", "link", "set", self.veth, "up")
        inside = ("ip", "-n", self.netns)
        run(*inside, "link", "set", f"{self.veth}p", "name", "eth0")
        run(*inside, "addr", "add", f"{self.address}/{h.network.prefixlen}", "dev", "eth0")
        run(*inside, "link", "set", "eth0", "up")
        run(*inside, "link", "set", "lo", "up")
        # No default route: the hosts reach each other and the deployer, nothing else.

    def _layers(self, key: str) -> None:
        for sub in ("upper", "work", "root"):
            (self.folder / sub).mkdir(parents=True)
        upper = self.folder / "upper"
        files = {
            "etc/hostname": f"{self.name}\n",
            "etc/hosts": "127.0.0.1 localhost\n"
            + "".join(f"{h.address} {h.name}\n" for h in self.hosts.all),
            "etc/ssh/sshd_config.d/test-host.conf": SSHD_CONFIG.format(address=self.address),
            "root/.ssh/authorized_keys": key,
            "usr/local/sbin/test-host-init": INIT,
        }
        for name, text in files.items():
            path = upper / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (upper / "root" / ".ssh").chmod(0o700)
        (upper / "root" / ".ssh" / "authorized_keys").chmod(0o600)

    def stop(self) -> list[str]:
        """Kill the host (its init: the kernel then kills all of its namespace), wait until
        its processes are gone, delete its network; what could not be undone, in words."""
        problems = []
        pid, started = self.init_pid, self.init_started
        if not pid and (self.folder / "init.pid").exists():
            pid_text, _, started = (self.folder / "init.pid").read_text().partition(" ")
            pid, started = int(pid_text), started.strip()
        kill(pid, started)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.pid_ns:
            deadline = time.monotonic() + 10
            while (left := in_namespace(self.pid_ns)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if left:
                problems.append(f"{self.name}: processes left {left}")
        run("ip", "link", "del", self.veth, check=False)
        if (
            run("ip", "netns", "del", self.netns, check=False).returncode != 0
            and (Path("/run/netns") / self.netns).exists()
        ):
            problems.append(f"{self.name}: netns {self.netns} not deleted")
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists():
            problems.append(f"{self.name}: {self.folder} not removed")
        self.init_pid = 0
        return problems


def pick_network(pid: int) -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 derived from ``pid`` that no route of this machine covers yet
    (another run's bridge, the machine's own networks)."""
    taken = [
        ipaddress.ip_network(line.split()[0], strict=False)
        for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
        if line and line.split()[0][0].isdigit()
    ]
    for step in range(256):
        n = (pid + step * 7919) % 65536
        network = ipaddress.ip_network(f"10.{100 + n // 256 % 100}.{n % 256}.0/24")
        if not any(network.overlaps(t) for t in taken if t.prefixlen > 0):
            return network
    raise HostError("no free 10.x /24 for the test hosts")


class Hosts:
    """N test hosts on one bridge. ``with Hosts(names, key) as hosts:`` or call close()."""

    def __init__(
        self,
        names: list[str],
        public_key: str,
        folder: Path | None = None,
        packages: tuple[str, ...] = PACKAGES,
    ) -> None:
        """``packages``: the base tree's (a test that needs more, such as ``postgresql``,
        gets a tree of its own, cached by its list: the hosts have no route to a mirror)."""
        pid = os.getpid()
        self.packages = packages
        self.tag = f"{PREFIX}{pid}"  # short: Linux link names are at most 15 bytes
        self.bridge = f"{self.tag}br"
        self.network = pick_network(pid)
        self.gateway = str(self.network.network_address + 1)
        self.folder = folder or Path(f"/var/tmp/{self.tag}-hosts")
        self.key = public_key
        self.all = [Host(self, i, name) for i, name in enumerate(names)]
        self.by_name = {h.name: h for h in self.all}
        self.bridge_made = False
        self.consoles: list = []

    def __getitem__(self, name: str) -> Host:
        return self.by_name[name]

    def console(self, host: Host):
        stream = (host.folder / "console.log").open("ab")
        self.consoles.append(stream)
        return stream

    def start(self, attempts: int = 3) -> "Hosts":
        sweep_stale()
        base = base_tree(self.packages)
        self.folder.mkdir(parents=True, exist_ok=True)
        run("ip", "link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        self.bridge_made = True
        run("ip", "addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for host in self.all:
            for attempt in range(attempts):  # a killed unshare: clean the half-made host, again
                try:
                    host.start(base, self.key)
                    break
                except (HostError, subprocess.TimeoutExpired) as error:
                    host.stop()
                    if attempt == attempts - 1:
                        raise HostError(f"{host.name}: did not start: {error}") from None
        return self

    def close(self) -> list[str]:
        """Remove everything; returns what was left (empty when clean)."""
        problems = []
        for host in self.all:
            problems += host.stop()
        for stream in self.consoles:
            stream.close()
        if self.bridge_made:
            run("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        return problems + leftovers(self.tag)

    def __enter__(self) -> "Hosts":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def leftovers(tag: str) -> list[str]:
    """What of a run (its tag) is still on this machine: namespaces, links, overlay mounts,
    folders; empty when it left nothing."""
    found = []
    netns = run("ip", "netns", "list", check=False).stdout.split()
    found += [f"netns {n}" for n in netns if n.startswith(tag)]
    links = run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    found += [f"link {line.split(':')[1].strip()}" for line in links if f" {tag}" in line]
    mounts = run("findmnt", "-rn", "-t", "overlay", "-o", "TARGET,OPTIONS", check=False).stdout
    found += [f"mount {line.split()[0]}" for line in mounts.splitlines() if tag in line]
    if Path(f"/var/tmp/{tag}-hosts").exists():
        found.append(f"folder /var/tmp/{tag}-hosts")
    return found


def sweep_stale() -> list[str]:
    """Remove the hosts of runs that were killed before their teardown (their runner's pid
    is gone): processes in their namespaces, namespaces, links, folders. What it removed."""
    swept = []
    names = run("ip", "netns", "list", check=False).stdout.split()
    shown = run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    links = [line.split(":")[1].strip().split("@")[0] for line in shown]
    folders = [p.name for p in Path("/var/tmp").glob(f"{PREFIX}*-hosts")]
    for pid in {int(m.group(1)) for n in names + links + folders
                if (m := re.match(rf"{PREFIX}(\d+)", n))}:  # fmt: skip
        if Path(f"/proc/{pid}").exists():
            continue  # a live run (or a reused pid): not ours to touch
        tag = f"{PREFIX}{pid}"
        for name in (n for n in names if re.fullmatch(rf"{tag}h\d+", n)):
            for inner in run("ip", "netns", "pids", name, check=False).stdout.split():
                kill(int(inner), start_time(int(inner)))
            run("ip", "netns", "del", name, check=False)
            swept.append(f"netns {name}")
        for link in (n for n in links if re.fullmatch(rf"{tag}(v\d+|br)", n)):
            run("ip", "link", "del", link, check=False)
            swept.append(f"link {link}")
        if Path(f"/var/tmp/{tag}-hosts").exists():
            shutil.rmtree(f"/var/tmp/{tag}-hosts", ignore_errors=True)
            swept.append(f"folder /var/tmp/{tag}-hosts")
    return swept
