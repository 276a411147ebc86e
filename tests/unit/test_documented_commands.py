"""Every command in the docs' shell blocks is checked against the code it calls, so a renamed
config key, flag or subcommand cannot break a documented command silently.

Each command line of a ```bash or ```powershell block falls to exactly one checker:

- ``python scripts/train.py ...`` and ``make train ARGS=...``: the overrides compose into a valid
  config in-process (as train.py does before it starts anything); the documented config errors
  fail with the documented message;
- ``python scripts/evaluate.py ...``: the overrides compose with conf/evaluate.yaml;
- ``python -m soulsai_bench ...``: the arguments parse with the benchmark CLI's own parser;
- ``python scripts/plot.py ...``: the flags parse with plot.py's parser;
- ``scripts/start_head.sh``, ``scripts/join_cluster.sh``, ``join_cluster.ps1``: every flag is one
  the script parses;
- everything else is in `ELSEWHERE`, naming the test that runs it or why it cannot run here.

Commands are also run for real by the tests named in `ELSEWHERE` and by
tests/e2e/test_benchmark_commands.py (each subcommand), tests/e2e/test_learning.py (train.py
with cluster=serial), tests/e2e/test_evaluate_script.py and tests/integration/test_head_script.py.
"""

from __future__ import annotations

import re
import shlex
import sys

import pytest
from docs_pages import PAGES, ROOT, page_id

from soulsai_ray.compose import compose_config

ELSEWHERE = {
    "make install": "CI runs it (make test installs first)",
    "make train": "tests/e2e/test_make_train.py runs it with a short stop",
    "make test": "CI runs it",
    "make test-fast": "a subset of make test",
    "make lint": "runs ruff; the Makefile's own target",
    "make format": "runs ruff; the Makefile's own target",
    "make bench": "installs the bench extra; tests/e2e/test_bench_installs.py resolves it",
    "make bench-rllib": "tests/e2e/test_bench_installs.py resolves requirements-rllib.txt",
    "source .venv/bin/activate": "the venv make install creates",
    "tensorboard --logdir": "tests/e2e/test_evaluate_script.py runs a real TensorBoard server",
    "export RAY_AUTH_MODE=token": "the tests' own environment (tests/conftest.py)",
    "ray status": "tests/e2e/test_live_run.py runs it against a live run",
    "ray list actors": "tests/e2e/test_live_run.py runs it against a live run",
    "prometheus --config.file": "tests/e2e/test_live_run.py scrapes a run with a real Prometheus",
    "sed ": "edits a copy of the Grafana dashboard (tests/unit/test_grafana_dashboard.py)",
    "sudo ufw": "a firewall rule on a real head; tests/hosts runs the same ports behind nftables",
    "New-NetFirewallRule": "Windows only",
    "touch docker/.env": "Docker: no Docker engine on this machine",
    'echo "RAY_AUTH_TOKEN=': "Docker: no Docker engine on this machine",
    "docker compose": "no Docker engine here; tests/unit/test_deploy_files.py checks the file",
    "pip install": "installs SoulsGym on a game PC (the dev extra has it)",
}
"""Commands checked or run elsewhere, by prefix, with where (or why not here)."""

DOCUMENTED_ERRORS = {
    "algo.batch_size=0": "algo.batch_size: must be > 0",
    "algo.batch_sise=64": "algo.batch_sise",
}
"""Documented config errors: the override and the message it must give."""


def _blocks(page) -> list[list[str]]:
    """The shell blocks (```bash, ```powershell) of a page, as lists of lines."""
    blocks, current = [], None
    for line in page.read_text().splitlines():
        fence = line.strip()
        if current is None and fence in ("```bash", "```powershell"):
            current = []
        elif current is not None and fence == "```":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


def _commands(block: list[str]) -> list[str]:
    """A block's commands: its ``$ `` lines if it has any (the rest is output), else every line;
    continuation lines (``\\`` or PowerShell's backtick) joined, comments dropped."""
    prompted = any(line.startswith("$ ") for line in block)
    commands, pending = [], ""
    for line in block:
        if prompted and not line.startswith("$ ") and not pending:
            continue
        line = re.sub(r"\s+#\s.*$", "", line.removeprefix("$ ")).strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith(("\\", "`")):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


DOCUMENTED = sorted(
    {(page_id(page), c) for page in PAGES for b in _blocks(page) for c in _commands(b)}
)


def _words(command: str) -> list[str]:
    words = shlex.split(command, posix=not command.startswith(".\\"))
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # VAR=value before the command
        words = words[1:]
    if words[:3] == ["sudo", "env", "PATH=$PATH"]:
        words = words[3:]
    return words


def _overrides(words: list[str]) -> list[str]:
    return [w for w in words if "=" in w and not w.startswith(("hydra.", "-"))]


def _check_train(words: list[str]) -> None:
    overrides = _overrides(words)
    errors = [message for key, message in DOCUMENTED_ERRORS.items() if key in overrides]
    if errors:
        with pytest.raises(Exception, match=re.escape(errors[0])):
            _compose(overrides)
        return
    _compose(overrides)


def _compose(overrides: list[str], config_name: str = "config"):
    from hydra import compose, initialize_config_dir

    from soulsai_ray.compose import CONF_DIR

    if config_name == "config":
        groups = {o.split("=")[0]: o.split("=")[1] for o in overrides if "." not in o.split("=")[0]}
        rest = [o for o in overrides if o.split("=")[0] not in ("algo", "env")]
        return compose_config(groups.get("algo", "dqn"), groups.get("env", "lunarlander"), rest)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def _check_flags(script: str, flags: list[str]) -> None:
    text = (ROOT / "scripts" / script).read_text()
    for flag in flags:
        if script.endswith(".ps1"):
            assert re.search(rf"\${flag[1:]}\b", text, re.I), f"{script} has no -{flag[1:]}"
        else:
            assert re.search(rf"^\s*(?:[-\w|]*\|)?{re.escape(flag)}\)", text, re.M), (
                f"{script} does not parse {flag}"
            )


def _check(command: str) -> None:
    words = _words(command)
    program = words[:2]
    if program == ["python", "scripts/train.py"]:
        _check_train(words[2:])
    elif words[:2] == ["make", "train"] and any(w.startswith("ARGS=") for w in words):
        args = next(w for w in words if w.startswith("ARGS=")).removeprefix("ARGS=")
        _check_train(shlex.split(args))
    elif program == ["python", "scripts/evaluate.py"]:
        _compose(_overrides(words[2:]), "evaluate")
    elif words[:3] == ["python", "-m", "soulsai_bench"]:
        from soulsai_bench.__main__ import build_parser

        build_parser().parse_args(words[3:])
    elif program == ["python", "scripts/plot.py"]:
        flags = [w for w in words[2:] if w.startswith("--")]
        text = (ROOT / "scripts" / "plot.py").read_text()
        assert all(f'"{flag}"' in text for flag in flags), flags
    elif words and words[0].replace("\\", "/").lstrip("./") in (
        "scripts/start_head.sh",
        "scripts/join_cluster.sh",
        "scripts/join_cluster.ps1",
    ):
        script = words[0].replace("\\", "/").rsplit("/", 1)[-1]
        _check_flags(script, [w for w in words[1:] if w.startswith("-")])
    else:
        assert any(command.startswith(prefix) for prefix in ELSEWHERE), (
            f"no test checks the documented command {command!r}: add a checker, or say in "
            "ELSEWHERE which test runs it (or why it cannot run here)"
        )


def test_the_docs_document_commands():
    assert len(DOCUMENTED) >= 30, DOCUMENTED


@pytest.mark.parametrize(("page", "command"), DOCUMENTED, ids=[c[:60] for _, c in DOCUMENTED])
def test_a_documented_command_fits_the_code_it_calls(page, command, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["soulsai_bench"])
    _check(command)


def test_a_stale_flag_or_key_is_caught():
    """The checkers fail on what a rename would leave behind."""
    for stale in (
        "python scripts/train.py algo.no_such_key=1",
        "python -m soulsai_bench solve --no-such-flag",
        "scripts/join_cluster.sh 10.0.0.1 --no-such-flag x",
        "docker run something",
    ):
        with pytest.raises((Exception, SystemExit)):
            _check(stale)
