"""The cluster's documented ports (scripts/ports.env) as port sets (imported by this name, which
no other test folder uses)."""

from __future__ import annotations

from pathlib import Path

from cluster_ports import numbers_of, port_numbers, read_ports

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def readme_ports() -> dict[str, set[int]]:
    """The documented ports by the firewall that admits them (``head``, ``pc``), and ``all``.

    An entry "open to" nobody is documented but stays closed on every machine.
    """
    ports = read_ports()
    found: dict[str, set[int]] = {"head": set(), "pc": set(), "all": port_numbers(ports)}
    for port in ports.values():
        if port.open_to == "nobody":
            continue
        found["head"] |= numbers_of(ports, port)
        if port.listens_on == "every node":
            found["pc"] |= numbers_of(ports, port)
    return found
