"""README.md and docs/*.md: short, linked, and naming only commands that exist."""

from __future__ import annotations

import re

import pytest
from docs_pages import (
    BENCH,
    DOCS,
    LINK,
    MAKE,
    PAGES,
    PYTHON_SCRIPT,
    README,
    ROOT,
    SCRIPT_FILE,
    anchors,
    bench_subcommands,
    make_targets,
    page_commands,
    page_id,
    split_page,
)

README_MAX_LINES = 300


def test_readme_is_a_guide_of_at_most_300_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_docs_pages_exist_and_the_readme_links_every_one():
    assert DOCS, "docs/ has no pages"
    linked = {
        (ROOT / target.split("#")[0]).resolve() for target in LINK.findall(README.read_text())
    }
    unlinked = [page_id(page) for page in DOCS if page.resolve() not in linked]
    assert not unlinked, f"README.md links no {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_point_to_files_and_headings_that_exist(page):
    prose, _ = split_page(page)
    broken = []
    for target in LINK.findall("\n".join(prose)):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page_id(page)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_documented_commands_name_scripts_targets_and_subcommands_that_exist(page):
    targets, subcommands = make_targets(), bench_subcommands()
    missing = []
    for command in page_commands(page):
        for script in sorted({*PYTHON_SCRIPT.findall(command), *SCRIPT_FILE.findall(command)}):
            if not (ROOT / script.replace("\\", "/")).is_file():
                missing.append(f"{command!r}: no {script}")
        for sub in BENCH.findall(command):
            if sub not in subcommands:
                missing.append(f"{command!r}: soulsai_bench has no subcommand {sub!r}")
        if (make := MAKE.match(command)) and make.group(1) and make.group(1) not in targets:
            missing.append(f"{command!r}: the Makefile has no target {make.group(1)!r}")
    assert not missing, f"{page_id(page)}: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_commands_use_the_active_venv_and_the_benchmark_package(page):
    """One way to run things: `python ...` in the activated venv, benchmarks as a package."""
    text = page.read_text()
    for stale in (".venv/bin/python", ".venv/bin/ray", ".venv/bin/tensorboard", "benchmark.py"):
        assert stale not in text, f"{page_id(page)} still says {stale}"


def test_benchmarks_page_documents_every_subcommand():
    commands = page_commands(ROOT / "docs" / "benchmarks.md")
    documented = {sub for command in commands for sub in BENCH.findall(command)}
    assert documented == bench_subcommands()


METRIC = re.compile(r"`((?:episode|eval|train|perf|dist|env|checkpoint|progress)/[\w/<>]+)`")
PROMETHEUS_METRIC = re.compile(r"`ray_(soulsai_\w+)`")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_metric_names_in_the_docs_are_the_ones_runs_write(page):
    """Every metric a page names is in soulsai_ray/metric_names.py (a family's placeholder such
    as ``dist/rejected/<reason>`` stands for its members)."""
    from soulsai_ray import metric_names as mn

    prometheus = {mn.prometheus_name(name) for name in mn.ALL}
    families = tuple(mn.prometheus_name(family) for family in mn.FAMILIES)
    unknown = []
    text = page.read_text()
    for name in METRIC.findall(text):
        concrete = re.sub(r"<\w+>", "x", name)
        if not mn.is_known(concrete):
            unknown.append(name)
    for name in PROMETHEUS_METRIC.findall(text):
        if name not in prometheus and not name.startswith(families) and not name.endswith("_"):
            unknown.append(f"ray_{name}")
    assert not unknown, f"{page_id(page)} names metrics no run writes: {unknown}"
