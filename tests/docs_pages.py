"""The user docs (README.md, docs/*.md) as data for tests: pages, their links, headings and the
command lines of their code blocks (imported by this name, which no other test folder uses)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
SUBCOMMANDS = ("solve", "lockstep", "learner", "throughput", "scale", "soak")
"""`python -m soulsai_bench` subcommands, used while soulsai_bench declares none."""

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`]+)`")
PYTHON_SCRIPT = re.compile(r"(?:^|\s)python3? (scripts/[\w./-]+\.py)\b")
BENCH = re.compile(r"(?:^|\s)python3? -m soulsai_bench ([a-z][\w-]*)")
"""A benchmark command; an upper-case word after it (SUBCOMMAND) is a placeholder."""
MAKE = re.compile(r"^make(?: ([\w-]+))?")
SCRIPT_FILE = re.compile(r"(?:^|[\s\\/.])(scripts[\\/][\w.-]+\.(?:sh|ps1|py|env))\b")


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def split_page(page: Path) -> tuple[list[str], list[str]]:
    """A page's prose lines and the lines of its fenced code blocks."""
    prose, code, fenced = [], [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    assert not fenced, f"{page_id(page)}: a code block is not closed"
    return prose, code


def page_commands(page: Path) -> list[str]:
    """Command lines of a page: lines of its code blocks and its inline code spans, without a
    leading ``$ `` prompt or a trailing comment."""
    prose, code = split_page(page)
    spans = [span for line in prose for span in INLINE_CODE.findall(line)]
    commands = []
    for line in [*code, *spans]:
        line = line.strip().removeprefix("$ ")
        line = re.sub(r"\s+#\s.*$", "", line)
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = split_page(page)
    return {slug(m.group(1)) for line in prose if (m := re.match(r"#{1,6} (.+)", line))}


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))


def bench_subcommands() -> set[str]:
    """The subcommands soulsai_bench's argparse declares, or SUBCOMMANDS if it declares none."""
    package = ROOT / "soulsai_bench"
    found = {
        name
        for source in sorted(package.glob("*.py"))
        for name in re.findall(r"add_parser\(\s*\"([\w-]+)\"", source.read_text())
    }
    return found or set(SUBCOMMANDS)
