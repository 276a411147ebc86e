"""scripts/ports.env, the cluster's one list of ports, as the tests read it.

Each entry is a line ``NAME=PORT  # listens on | open to | what``; bash sources the file, so the
comment must follow the value after whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTS_FILE = ROOT / "scripts" / "ports.env"
LISTENS_ON = ("head", "every node")
OPEN_TO = ("game PCs", "all nodes", "head", "nobody")
ENV_VARIABLES = ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT")
"""Entries the head's Ray reads from its environment, not from a `ray start` flag."""
_ENTRY = re.compile(r"^([A-Z_]+)=(\d+)\s+#\s*(.+?)\s*\|\s*(.+?)\s*\|\s*(.+?)\s*$")


@dataclass(frozen=True)
class Port:
    """One entry of the ports file."""

    name: str
    number: int
    listens_on: str
    open_to: str
    what: str

    @property
    def flag(self) -> str | None:
        """The `ray start` flag that sets this port (without ``--``); None for an env variable."""
        if self.name in ENV_VARIABLES:
            return None
        return "port" if self.name == "GCS_PORT" else self.name.lower().replace("_", "-")


def read_ports(path: Path = PORTS_FILE) -> dict[str, Port]:
    """The entries of the ports file by name, checked for shape.

    Raises:
        ValueError: a line that is neither a comment nor a well-formed entry, a name given
            twice, or a "listens on"/"open to" value outside the documented ones.
    """
    ports: dict[str, Port] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _ENTRY.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not NAME=PORT  # listens on | open to | what")
        name, port, listens_on, open_to, what = match.groups()
        if name in ports or listens_on not in LISTENS_ON or open_to not in OPEN_TO:
            raise ValueError(f"{path}:{number}: duplicate name or unknown column value: {line}")
        ports[name] = Port(name, int(port), listens_on, open_to, what)
    return ports


def port_rows(ports: dict[str, Port]) -> list[tuple[str, str, str, str, str]]:
    """The file as table rows ``(port, name, listens on, open to, what)``, in file order; a
    ``MIN_X``/``MAX_X`` pair is one row with the range ``min–max``."""
    rows = []
    for port in ports.values():
        if port.name.startswith("MAX_"):
            continue
        if port.name.startswith("MIN_"):
            high = ports[f"MAX_{port.name[4:]}"]
            rows.append(
                (
                    f"{port.number}–{high.number}",
                    f"{port.name}, {high.name}",
                    port.listens_on,
                    port.open_to,
                    port.what,
                )
            )
        else:
            rows.append((str(port.number), port.name, port.listens_on, port.open_to, port.what))
    return rows


def numbers_of(ports: dict[str, Port], port: Port) -> set[int]:
    """The port numbers an entry stands for: a ``MIN_X`` entry its range up to ``MAX_X``, a
    ``MAX_X`` entry none (its ``MIN_X`` holds them), any other entry its own number."""
    if port.name.startswith("MIN_"):
        return set(range(port.number, ports[f"MAX_{port.name[4:]}"].number + 1))
    return set() if port.name.startswith("MAX_") else {port.number}


def port_numbers(ports: dict[str, Port]) -> set[int]:
    """Every port number the file names, ranges expanded."""
    return {n for port in ports.values() for n in numbers_of(ports, port)}


def ray_start_port_options() -> set[str]:
    """Every port option of the installed ``ray start`` (without ``--``), which the ports file and
    the scripts must pin."""
    from ray.scripts.scripts import start

    return {
        opt[2:]
        for param in start.params
        if not getattr(param, "hidden", False)
        for opt in param.opts
        if opt.endswith("port") and opt != "--worker-port-list"
    }
