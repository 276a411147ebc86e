"""A small LAN of real network hosts on one machine, made of Linux network namespaces.

Every host is a namespace with one veth link to a bridge that lives in a namespace of its own, an
address in 10.77.0.0/24 and no default route: nothing it sends can leave the LAN. Every process a
host runs is started in a session of its own; :meth:`Lan.close` kills the processes of every
namespace by pid (``ip netns pids``), then deletes the namespaces (and with them their links).

Ray nodes keep their files under ``RAY_TMPDIR``; each host gets its own, so nothing the LAN's Ray
writes (``ray_current_cluster``, the Prometheus discovery file) reaches the host's ``/tmp/ray``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from soulsai_bench import SCRIPTS

SUBNET = "10.77.0"
PREFIX = "srl"
"""Namespaces and links of this harness start with this, the creating pid and a letter."""
STARTUP_TIMED_OUT = "timed out during startup"
"""What ``ray start`` says when its raylet did not register within Ray's fixed 30 s."""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@dataclass
class Host:
    """One machine of the LAN: its namespace, address, home folder and Ray temp folder."""

    name: str
    ns: str
    ip: str
    root: Path
    link: str
    """The host's end of its veth link (inside the namespace)."""

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmpdir(self) -> Path:
        return self.root / "ray"


@dataclass
class Lan:
    """The namespaces, links and processes of one test LAN; see the module docstring."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lan", dir="/tmp")))
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge_ns: str = ""
    tag: str = field(default_factory=lambda: _new_tag())  # noqa: PLW0108 - defined below

    def __post_init__(self) -> None:
        remove_stale_lans()
        self.bridge_ns = f"{self.tag}-br"
        _ip("netns", "add", self.bridge_ns)
        _ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
        _ip("link", "set", "br0", "up", ns=self.bridge_ns)
        _ip("link", "set", "lo", "up", ns=self.bridge_ns)

    def add_host(self, name: str, last_octet: int) -> Host:
        """Creates host ``name`` at 10.77.0.<last_octet>, linked to the bridge."""
        ns = f"{self.tag}-{name}"
        inner, outer = f"v{len(self.hosts)}", f"{self.tag}-{len(self.hosts)}"
        _ip("netns", "add", ns)
        _ip(
            "link",
            "add",
            inner,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            outer,
            "netns",
            self.bridge_ns,
        )
        _ip("link", "set", outer, "master", "br0", ns=self.bridge_ns)
        _ip("link", "set", outer, "up", ns=self.bridge_ns)
        address = f"{SUBNET}.{last_octet}"
        _ip("addr", "add", f"{address}/24", "dev", inner, ns=ns)
        _ip("link", "set", inner, "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        host = Host(name, ns, address, self.base / name, inner)
        host.home.mkdir(parents=True)
        host.tmpdir.mkdir()
        self.hosts[name] = host
        return host

    def env(self, host: Host, **extra: str) -> dict[str, str]:
        """A clean environment for ``host``: its HOME and RAY_TMPDIR, no Ray auth or address."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_TMPDIR", "RAY_ENABLE_WINDOWS"))
        }
        env.update(HOME=str(host.home), RAY_TMPDIR=str(host.tmpdir), **extra)
        return env

    def start(self, host: Host, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        """Starts ``cmd`` in ``host``'s namespace, in a session of its own, output to ``log``."""
        with open(log, "w") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", host.ns, *cmd],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def run(
        self,
        host: Host,
        cmd: list[str],
        env: dict[str, str] | None = None,
        timeout: float = 120,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess:
        """Runs ``cmd`` in ``host``'s namespace to the end; stdout and stderr kept apart.

        Args:
            host: The namespace to run in.
            cmd: The command and its arguments.
            env: Its environment (None: this process's).
            timeout: Seconds before it is killed and `subprocess.TimeoutExpired` raised.
            input: Text for its stdin.
            check: Raise `subprocess.CalledProcessError` if it fails.
        """
        return subprocess.run(
            ["ip", "netns", "exec", host.ns, *cmd],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            start_new_session=True,
        )

    def script(
        self, host: Host, name: str, *args: str, timeout: float = 180, **env: str
    ) -> subprocess.CompletedProcess:
        """Runs ``scripts/<name>`` in ``host``'s namespace, as a user there would."""
        cmd = ["bash", str(SCRIPTS / name), *args]
        return self.run(host, cmd, self.env(host, **env), timeout)

    def join(
        self, pc: Host, head: Host, token: Path, *extra: str, **env: str
    ) -> subprocess.CompletedProcess:
        """``join_cluster.sh`` on ``pc`` as the README says: one ``soulsgym`` slot, one CPU.

        Once more if the PC's raylet missed Ray's fixed 30 s registration wait, after ending by
        pid what the timed-out start left on ``pc``: this machine hosts every node, and its two
        cores may be busy with other work while a real game PC starts only its own node.
        """
        args = [f"{head.ip}:6379", "--token-file", str(token), "--resources", '{"soulsgym": 1}']
        args += ["--num-cpus", "1", *extra]
        joined = self.script(pc, "join_cluster.sh", *args, **env)
        if joined.returncode != 0 and STARTUP_TIMED_OUT in joined.stdout + joined.stderr:
            self.kill(pc)
            joined = self.script(pc, "join_cluster.sh", *args, **env)
        return joined

    def copy_token(self, token: Path, host: Host) -> Path:
        """The head's ``token``, copied to ``host`` the way the README says (mode 0600)."""
        copy = host.root / "auth_token"
        shutil.copyfile(token, copy)
        copy.chmod(0o600)
        return copy

    def firewall(self, host: Host, ports: set[int]) -> None:
        """Admits only TCP ``ports`` from the LAN; every other new connection is dropped and its
        port recorded (read with :meth:`blocked_ports`)."""
        listed = ", ".join(str(p) for p in sorted(ports))
        rules = f"""
        table inet lanfw {{
          set blocked {{ type inet_service; flags dynamic; size 4096; }}
          chain input {{
            type filter hook input priority 0; policy drop;
            iif lo accept
            ct state established,related accept
            ip saddr {SUBNET}.0/24 tcp dport {{ {listed} }} accept
            tcp flags syn add @blocked {{ tcp dport }}
          }}
        }}
        """
        self.exec(host, "nft", "-f", "-", input=rules)

    def exec(self, host: Host, *cmd: str, input: str | None = None) -> str:
        """Runs a short command in ``host``'s namespace; returns its stdout (raises on failure)."""
        return self.run(host, list(cmd), input=input, check=True).stdout

    def blocked_ports(self, host: Host) -> set[int]:
        """Ports of connections the firewall of ``host`` dropped."""
        out = self.exec(host, "nft", "list", "set", "inet", "lanfw", "blocked")
        match = re.search(r"elements = \{([^}]*)\}", out)
        return {int(p) for p in re.findall(r"\d+", match.group(1))} if match else set()

    def listening(self, host: Host) -> set[tuple[str, int]]:
        """(address, port) of every TCP socket listening in ``host``'s namespace."""
        out = self.exec(host, "ss", "-Hltn")
        sockets = set()
        for line in out.splitlines():
            local = line.split()[3]
            address, port = local.rsplit(":", 1)
            sockets.add((address.strip("[]"), int(port)))
        return sockets

    def impair(self, host: Host, loss_pct: float, delay_ms: int = 0, jitter_ms: int = 0) -> str:
        """Makes ``host``'s link lossy (and slow, where the kernel has netem); returns what was set.

        Loss is an nftables rule dropping that share of the host's outgoing packets at random;
        delay and jitter need the kernel's netem qdisc, which some kernels lack.
        """
        per_mille = round(loss_pct * 10)
        rules = f"""
        table inet lanloss {{
          chain output {{
            type filter hook output priority 0; policy accept;
            oif "{host.link}" numgen random mod 1000 < {per_mille} drop
          }}
        }}
        """
        self.exec(host, "nft", "-f", "-", input=rules)
        applied = f"{loss_pct}% loss"
        if delay_ms:
            spec = ["delay", f"{delay_ms}ms", f"{jitter_ms}ms"]
            tc = ["ip", "netns", "exec", host.ns, "tc", "qdisc", "replace", "dev", host.link]
            done = subprocess.run([*tc, "root", "netem", *spec], capture_output=True, text=True)
            applied += (
                f", {delay_ms}±{jitter_ms} ms" if done.returncode == 0 else ", no delay (no netem)"
            )
        return applied

    def link(self, host: Host, up: bool) -> None:
        """Plugs ``host``'s cable in or pulls it."""
        _ip("link", "set", host.link, "up" if up else "down", ns=host.ns)

    def pids(self, host: Host) -> list[int]:
        """Pids of the processes in ``host``'s namespace."""
        out = _ip("netns", "pids", host.ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill(self, *hosts: Host) -> None:
        """Ends every process of ``hosts`` by pid: SIGTERM, then SIGKILL after 5 s."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for host in hosts:
                for pid in self.pids(host):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while any(self.pids(h) for h in hosts) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not any(self.pids(h) for h in hosts):
                return

    def close(self) -> None:
        """Kills every process in the LAN's namespaces, deletes them and the temp folders."""
        self.kill(*self.hosts.values())
        for ns in [h.ns for h in self.hosts.values()] + [self.bridge_ns]:
            _ip("netns", "delete", ns, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


_lans_made = itertools.count()


def _new_tag() -> str:
    """``srl<pid><letter>``: unique per LAN of this process, short enough for link names."""
    return f"{PREFIX}{os.getpid()}{string.ascii_lowercase[next(_lans_made) % 26]}"


def remove_stale_lans() -> list[str]:
    """Deletes the namespaces (and kills the processes) of LANs whose creating process is gone,
    such as one killed by SIGKILL before it could clean up; returns their names."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    stale = []
    for name in (line.split()[0] for line in listed if line.strip()):
        match = re.fullmatch(rf"{PREFIX}(\d+)[a-z]-.+", name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "delete", name, check=False)
        stale.append(name)
    return stale


def can_build_a_lan() -> str | None:
    """Why this machine cannot build a LAN (not root, no ip/nft/tc), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: iproute2, nftables)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None
