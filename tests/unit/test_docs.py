"""README.md and docs/*.md: short, linked, and naming only commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 300
SUBCOMMANDS = ("solve", "lockstep", "learner", "throughput", "scale", "soak")
"""`python -m soulsai_bench` subcommands, used while soulsai_bench declares none."""

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`([^`]+)`")
PYTHON_SCRIPT = re.compile(r"(?:^|\s)python3? (scripts/[\w./-]+\.py)\b")
BENCH = re.compile(r"(?:^|\s)python3? -m soulsai_bench ([a-z][\w-]*)")
"""A benchmark command; an upper-case word after it (SUBCOMMAND) is a placeholder."""
MAKE = re.compile(r"^make(?: ([\w-]+))?")
SCRIPT_FILE = re.compile(r"(?:^|[\s\\/.])(scripts[\\/][\w.-]+\.(?:sh|ps1|py|env))\b")


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _split(page: Path) -> tuple[list[str], list[str]]:
    """A page's prose lines and the lines of its fenced code blocks."""
    prose, code, fenced = [], [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    assert not fenced, f"{_page_id(page)}: a code block is not closed"
    return prose, code


def _commands(page: Path) -> list[str]:
    """Command lines of a page: lines of its code blocks and its inline code spans, without a
    leading ``$ `` prompt or a trailing comment."""
    prose, code = _split(page)
    spans = [span for line in prose for span in INLINE_CODE.findall(line)]
    commands = []
    for line in [*code, *spans]:
        line = line.strip().removeprefix("$ ")
        line = re.sub(r"\s+#\s.*$", "", line)
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose, _ = _split(page)
    return {_slug(m.group(1)) for line in prose if (m := re.match(r"#{1,6} (.+)", line))}


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))


def _bench_subcommands() -> set[str]:
    """The subcommands soulsai_bench's argparse declares, or SUBCOMMANDS if it declares none."""
    package = ROOT / "soulsai_bench"
    found = {
        name
        for source in sorted(package.glob("*.py"))
        for name in re.findall(r"add_parser\(\s*\"([\w-]+)\"", source.read_text())
    }
    return found or set(SUBCOMMANDS)


def test_readme_is_a_guide_of_at_most_300_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_docs_pages_exist_and_the_readme_links_every_one():
    assert DOCS, "docs/ has no pages"
    linked = {
        (ROOT / target.split("#")[0]).resolve() for target in LINK.findall(README.read_text())
    }
    unlinked = [_page_id(page) for page in DOCS if page.resolve() not in linked]
    assert not unlinked, f"README.md links no {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_point_to_files_and_headings_that_exist(page):
    prose, _ = _split(page)
    broken = []
    for target in LINK.findall("\n".join(prose)):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{_page_id(page)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_documented_commands_name_scripts_targets_and_subcommands_that_exist(page):
    targets, subcommands = _make_targets(), _bench_subcommands()
    missing = []
    for command in _commands(page):
        for script in sorted({*PYTHON_SCRIPT.findall(command), *SCRIPT_FILE.findall(command)}):
            if not (ROOT / script.replace("\\", "/")).is_file():
                missing.append(f"{command!r}: no {script}")
        for sub in BENCH.findall(command):
            if sub not in subcommands:
                missing.append(f"{command!r}: soulsai_bench has no subcommand {sub!r}")
        if (make := MAKE.match(command)) and make.group(1) and make.group(1) not in targets:
            missing.append(f"{command!r}: the Makefile has no target {make.group(1)!r}")
    assert not missing, f"{_page_id(page)}: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_commands_use_the_active_venv_and_the_benchmark_package(page):
    """One way to run things: `python ...` in the activated venv, benchmarks as a package."""
    text = page.read_text()
    for stale in (".venv/bin/python", ".venv/bin/ray", ".venv/bin/tensorboard", "benchmark.py"):
        assert stale not in text, f"{_page_id(page)} still says {stale}"


def test_benchmarks_page_documents_every_subcommand():
    commands = _commands(ROOT / "docs" / "benchmarks.md")
    documented = {sub for command in commands for sub in BENCH.findall(command)}
    assert documented == _bench_subcommands()
