"""The README's Security table as port sets (imported by this name, which no other test folder
uses)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def readme_ports() -> dict[str, set[int]]:
    """The README Security table: ports by who may reach them (``head``, ``pc``) and ``all``.

    A row whose "open to" column starts with "nobody" is documented but stays closed.
    """
    section = (ROOT / "README.md").read_text().split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    ports: dict[str, set[int]] = {"head": set(), "pc": set(), "all": set()}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) != 4 or not re.match(r"\d", cells[0]):
            continue
        bounds = [int(n) for n in re.findall(r"\d+", cells[0])]
        numbers = set(range(bounds[0], bounds[-1] + 1))
        ports["all"] |= numbers
        if cells[3].startswith("nobody"):
            continue
        if "head" in cells[2] or "every node" in cells[2]:
            ports["head"] |= numbers
        if "every node" in cells[2]:
            ports["pc"] |= numbers
    return ports
