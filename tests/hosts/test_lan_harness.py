"""The LAN harness cleans up after itself, also after a run that was killed."""

from __future__ import annotations

import subprocess

import pytest

from soulsai_bench.lan import PREFIX, Lan, can_build_a_lan, remove_stale_lans


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture(autouse=True)
def _needs_a_lan():
    reason = can_build_a_lan()
    if reason is not None:
        pytest.skip(reason)


def test_namespaces_of_a_killed_run_are_removed_and_live_ones_kept():
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is free now: a LAN it made is stale
    stale = f"{PREFIX}{dead.pid}a-pc1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "60"])
    other = Lan()  # a second LAN of the same process (the session's cluster may be a first)
    lan = Lan()  # creating a LAN sweeps stale ones
    try:
        lan.add_host("pc", 5)
        assert stale not in _namespaces()
        assert sleeper.wait(timeout=5) != 0  # its process was killed
        assert remove_stale_lans() == []  # this process is alive: its LAN stays
        assert {lan.bridge_ns, f"{lan.tag}-pc", other.bridge_ns} <= _namespaces()
    finally:
        lan.close()
        other.close()
    assert other.tag != lan.tag
    assert not {n for n in _namespaces() if n.startswith((lan.tag, other.tag))}
    assert not lan.base.exists()
