"""Chaos soak: a training run on game-rate envs while faults of every kind strike on a seeded
schedule.

``python -m soulsai_bench soak``. The soak starts a local multi-node Ray cluster (a head and
``--nodes`` simulated game PCs offering ``{"soulsgym": 1}``), runs ``scripts/train.py`` against
it as a separate driver process, and, at moments drawn from ``random.Random(seed)`` (counted from
the run's first env steps), strikes with every kind of fault (or those of ``--faults``):

- SIGKILLs a rollout actor, the learner, the replay actor or the weight store (found by class in
  the GCS, killed by pid),
- freezes a rollout actor's process (SIGSTOP: a game that hangs without raising),
- fills the checkpoint file system (a small tmpfs mounted on the run's checkpoint folder) so a
  periodic checkpoint fails with ENOSPC, then frees it,
- SIGKILLs the driver and starts it again with ``resume=auto``,
- stops the driver as an operator does: SIGTERM to its whole process group (systemd, ``timeout``)
  or SIGHUP (a dropped SSH session); the stop must be graceful (exit 0, a summary, a final
  checkpoint at the summary's env steps, within `STOP_BOUND_S`), then it starts again with
  ``resume=auto``.

After each fault it waits (bounded) for recovery: the actor is back (or the stall was noticed, or a
checkpoint was written again) and env steps and updates move again. Progress is read from the
run's TensorBoard files. Every process the soak starts is stopped by pid; the tmpfs is unmounted;
the run's folder is removed unless ``--runs-dir`` names where to keep it.
A soak shorter than 8 minutes keeps its first and last quarter free of faults instead of a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from soulsai_bench import ROOT, TRAIN_SCRIPT
from soulsai_bench.soak_probe import RunReader, actors_alive, rss_mb
from soulsai_bench.soak_report import RECOVERY_TIMEOUT_S, Fault, Segment, SoakReport, print_report
from soulsai_ray import metric_names as mn

ACTOR_CLASSES = {
    "rollout": ("RolloutActor", "PPORolloutActor"),
    "learner": ("LearnerActor", "PPOLearnerActor"),
    "replay": ("ReplayActor",),
    "weights": ("WeightStore",),
}
STOP_SIGNALS = {"group_sigterm": signal.SIGTERM, "sighup": signal.SIGHUP}
KINDS = {
    "dqn": ("rollout", "learner", "replay", "weights", "hang", "disk_full", "driver")
    + tuple(STOP_SIGNALS),
    "ppo": ("rollout", "learner", "hang", "disk_full", "driver") + tuple(STOP_SIGNALS),
}
STOP_BOUND_S = 60.0
"""Longest a graceful stop may take here (the rollout drain's 10 s, the final checkpoint)."""
FAULT_KINDS = tuple(dict.fromkeys(kind for kinds in KINDS.values() for kind in kinds))
STEP_TIMEOUT_S = 5.0
TMPFS_MB = 64
QUIET_S = 60.0
"""No fault in the first and last minute of a soak (a quarter of a soak under 8 minutes)."""


class Soak:
    """Runs one soak; see the module docstring."""

    def __init__(
        self,
        algo: str,
        minutes: float,
        seed: int,
        nodes: int,
        step_latency: float,
        faults: list[str] | None = None,
        overrides: Sequence[str] = (),
        work: Path | None = None,
    ) -> None:
        """Args:
        faults: The kinds of fault to strike with (default: every kind ``algo`` has).
        overrides: Hydra overrides for every driver of the run (after the soak's own).
        work: An empty or new folder for the run and its logs (default: temporary, removed).
        """
        kinds = KINDS[algo]
        unknown = sorted(set(faults or ()) - set(kinds))
        if unknown:
            raise ValueError(f"faults {unknown} do not apply to algo={algo}; choose from {kinds}")
        self.kinds = tuple(k for k in kinds if faults is None or k in faults)
        self.algo, self.seed, self.nodes = algo, seed, nodes
        self.extra, self.duration_s, self.step_latency = list(overrides), minutes * 60, step_latency
        self.rng = random.Random(seed)
        self.temporary = None if work else tempfile.TemporaryDirectory(prefix=f"soak_{algo}_")
        self.work = Path(work or self.temporary.name)
        if self.work.exists() and (not self.work.is_dir() or any(self.work.iterdir())):
            raise ValueError(f"--runs-dir {self.work} is not an empty folder")
        self.work.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.work / "run"
        self.checkpoints = self.run_dir / "checkpoints"
        self.report = SoakReport()
        self.driver: subprocess.Popen | None = None
        self.mounted, self.start = False, 0.0
        self.reader = RunReader(self.run_dir, self.report)

    # --- processes ----------------------------------------------------------------------------

    def overrides(self, address: str) -> list[str]:
        common = [
            f"algo={self.algo}",
            "env=cartpole",
            f"env.step_latency_s={self.step_latency}",
            f"env.step_timeout_s={STEP_TIMEOUT_S}",
            "env.actor_resources={soulsgym: 1}",
            "cluster=remote",
            f"cluster.address={address}",
            "cluster.rollout_num_cpus=0",
            "checkpoint.keep_last=2",
            "stop.env_steps=null",
            "stop.return_mean=null",
            f"stop.time_s={self.driver_time_limit_s()}",
            "telemetry.console=false",
            "telemetry.log_every_s=1.0",
            f"seed={self.seed}",
            f"hydra.run.dir={self.run_dir}",
        ]
        if self.algo == "dqn":
            return [*common, "algo.learning_starts=1000", "checkpoint.every_updates=3000"]
        ppo = ["algo.n_steps=128", "algo.iteration_timeout_s=15", "checkpoint.every_updates=400"]
        return [*common, *ppo]

    def start_driver(self, address: str, resume: bool) -> None:
        segment = Segment()
        if resume:
            latest = self.reader.latest_checkpoint()
            segment.resumed_from_env_steps = latest["env_steps"] if latest else None
        args = [*self.overrides(address), *self.extra, *(["resume=auto"] if resume else [])]
        log = open(self.work / f"driver_{len(self.report.segments)}.log", "w")  # noqa: SIM115
        before = set(self.reader.events_files())
        self.driver = subprocess.Popen(
            [sys.executable, str(TRAIN_SCRIPT), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "token"},
            start_new_session=True,  # a process group of its own, as systemd gives a service
        )
        self.report.segments.append(segment)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = [f for f in self.reader.events_files() if f not in before]
            if new:
                segment.events = new[0]
                return
            if self.driver.poll() is not None:
                raise RuntimeError(f"driver exited with {self.driver.returncode}; see {log.name}")
            time.sleep(0.5)
        raise RuntimeError("the driver wrote no TensorBoard file within 120 s")

    def wait_until(self, ok, since: float) -> float | None:
        """Seconds from ``since`` until ``ok()`` holds, or None after ``RECOVERY_TIMEOUT_S``.

        Raises:
            RuntimeError: the driver exited on its own meanwhile (nothing can recover then).
        """
        while time.monotonic() - since < RECOVERY_TIMEOUT_S:
            if self.driver is not None and self.driver.poll() is not None:
                raise RuntimeError(f"the driver exited on its own (exit {self.driver.returncode})")
            if ok():
                return time.monotonic() - since
            self.sample_rss()
            time.sleep(0.5)
        return None

    def moved_past(self, steps: int, updates: int):
        def ok() -> bool:
            now_steps, now_updates = self.reader.progress()
            return now_steps > steps + 100 and now_updates > updates + 10

        return ok

    def sample_rss(self) -> None:
        now = time.monotonic() - self.start
        last = self.report.rss.get("driver", [(-1e9, 0.0)])[-1][0]
        if now - last < 15:
            return
        pids = {"driver": self.driver.pid if self.driver else None}
        for kind in ("learner", "replay"):
            alive = actors_alive(ACTOR_CLASSES[kind])
            pids[kind] = alive[0]["Pid"] if alive else None
        for name, pid in pids.items():
            value = rss_mb(pid) if pid else None
            if value is not None:
                self.report.rss.setdefault(name, []).append((now, value))

    # --- faults -------------------------------------------------------------------------------

    def inject(self, kind: str, address: str) -> Fault:
        fault = Fault(kind, time.monotonic() - self.start)
        since = time.monotonic()
        steps, updates = self.reader.progress()
        if self.driver.poll() is not None:
            raise RuntimeError(f"the driver died on its own (exit {self.driver.returncode})")
        if kind in ACTOR_CLASSES:
            victims = actors_alive(ACTOR_CLASSES[kind])
            if not victims:
                fault.detail = "no live actor of this kind"
                return fault
            victim = self.rng.choice(victims)
            os.kill(victim["Pid"], signal.SIGKILL)
            fault.detail = f"{victim['ActorClassName']} pid {victim['Pid']}"
            fault.recovered_s = self.wait_until(self.moved_past(steps, updates), since)
        elif kind == "hang":
            victims = actors_alive(ACTOR_CLASSES["rollout"])
            if not victims:
                fault.detail = "no live rollout actor"
                return fault
            victim = self.rng.choice(victims)
            os.kill(victim["Pid"], signal.SIGSTOP)
            stalls = self.reader.count(mn.ENV_STALLS)
            fault.detail = f"SIGSTOP pid {victim['Pid']}"
            noticed = self.wait_until(lambda: self.reader.count(mn.ENV_STALLS) > stalls, since)
            fault.recovered_s = noticed and self.wait_until(
                self.moved_past(*self.reader.progress()), since
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim["Pid"], signal.SIGKILL)  # if Ray's kill has not landed yet
        elif kind == "disk_full":
            fault.recovered_s = self.fill_disk(since)
        elif kind in STOP_SIGNALS:
            fault.detail, graceful = self.stop_gracefully(
                STOP_SIGNALS[kind], group=kind == "group_sigterm"
            )
            final = self.reader.latest_checkpoint() or {}  # the resumed run starts from here
            self.start_driver(address, resume=True)
            baseline = (final.get("env_steps", 0), final.get("updates", 0))
            moved = self.wait_until(self.moved_past(*baseline), since)
            fault.recovered_s = moved if graceful else None
        elif kind == "driver":
            self.driver.send_signal(signal.SIGKILL)
            self.driver.wait(timeout=60)
            latest = self.reader.latest_checkpoint()
            fault.detail = f"resume from env step {latest['env_steps'] if latest else 0}"
            self.start_driver(address, resume=True)
            fault.recovered_s = self.wait_until(self.moved_past(*self.reader.progress()), since)
        return fault

    def stop_gracefully(self, sig: signal.Signals, group: bool) -> tuple[str, bool]:
        """Sends ``sig`` to the driver (or its process group); returns what happened and whether
        the stop was graceful: exit 0 within `STOP_BOUND_S`, a summary naming the signal, and a
        final checkpoint at the summary's env steps."""
        sent = time.monotonic()
        if group:
            os.killpg(self.driver.pid, sig)
        else:
            self.driver.send_signal(sig)
        try:
            code = self.driver.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            self.driver.kill()
            self.driver.wait(timeout=60)
            return f"{sig.name}: no exit within {STOP_BOUND_S:.0f}s", False
        took = time.monotonic() - sent
        try:
            summary = json.loads((self.run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {}
        latest = self.reader.latest_checkpoint() or {}
        graceful = (
            code == 0
            and summary.get("stop_reason") == sig.name
            and latest.get("env_steps") == summary.get("env_steps")
        )
        detail = (
            f"{sig.name}{' to the group' if group else ''}: exit {code} in {took:.1f}s, "
            f"summary {summary.get('stop_reason')}, final checkpoint at {latest.get('env_steps')}"
        )
        return detail, graceful

    def fill_disk(self, since: float) -> float | None:
        if not self.mounted:
            return None
        filler = self.checkpoints / ".filler"
        failures = self.reader.count(mn.write_failures("checkpoint"))
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 20))
        failed = self.wait_until(
            lambda: self.reader.count(mn.write_failures("checkpoint")) > failures, since
        )
        filler.unlink()
        if failed is None:
            return None
        newest = self.reader.checkpoint_updates()
        return self.wait_until(lambda: self.reader.checkpoint_updates() > newest, since)

    def fault_count(self) -> int:
        """Faults the soak strikes with: every kind once, and one per 75 s of a longer soak."""
        return max(len(self.kinds), int(self.duration_s / 75))

    def driver_time_limit_s(self) -> float:
        """The driver's own time limit, a safety net should the soak die: the soak ends it with
        SIGINT first, after its duration and the recovery waits of every fault."""
        return self.duration_s * 3 + RECOVERY_TIMEOUT_S * self.fault_count()

    def schedule(self) -> list[tuple[float, str]]:
        """Fault times and kinds: every kind at least once, driver kills in the first half."""
        kinds = list(self.kinds)
        count = self.fault_count()
        chosen = kinds + [self.rng.choice(kinds) for _ in range(count - len(kinds))]
        self.rng.shuffle(chosen)
        quiet = min(QUIET_S, self.duration_s / 4)
        times = sorted(self.rng.uniform(quiet, self.duration_s - quiet) for _ in chosen)
        plan = list(zip(times, chosen, strict=True))
        half = self.duration_s / 2
        late_driver = [i for i, (t, k) in enumerate(plan) if k == "driver" and t > half]
        early_other = [i for i, (t, k) in enumerate(plan) if k != "driver" and t <= half]
        for i, j in zip(late_driver, early_other, strict=False):
            plan[i], plan[j] = (plan[i][0], plan[j][1]), (plan[j][0], plan[i][1])
        return plan

    # --- the whole soak -----------------------------------------------------------------------

    def run(self) -> SoakReport:
        import ray
        from ray.cluster_utils import Cluster

        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
            },
        )
        try:
            for _ in range(self.nodes):
                cluster.add_node(num_cpus=1, resources={"soulsgym": 1}, node_ip_address="127.0.0.1")
            ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
            if "disk_full" in self.kinds:
                self._mount_tmpfs()
            self.start_driver(cluster.address, resume=False)
            # the soak's clock starts once the run samples
            if self.wait_until(lambda: self.reader.progress()[0] > 0, time.monotonic()) is None:
                raise RuntimeError(f"the run sampled no env step within {RECOVERY_TIMEOUT_S} s")
            self.start = time.monotonic()
            for at_s, kind in self.schedule():
                while time.monotonic() - self.start < at_s:
                    self.sample_rss()
                    self.reader.progress()
                    time.sleep(1.0)
                fault = self.inject(kind, cluster.address)
                self.report.faults.append(fault)
                print(
                    f"[{fault.at_s:7.1f}s] {kind:13s} recovered in {fault.recovered_s} s {fault.detail}"
                )
            while time.monotonic() - self.start < self.duration_s:
                self.sample_rss()
                self.reader.progress()
                time.sleep(1.0)
            self.reader.progress()
            self.driver.send_signal(signal.SIGINT)
            self.driver.wait(timeout=300)
            self.report.summary = json.loads((self.run_dir / "summary.json").read_text())
        finally:
            if self.driver and self.driver.poll() is None:
                self.driver.kill()
            if self.mounted:
                subprocess.run(["umount", "-l", str(self.checkpoints)], check=False)
            ray.shutdown()
            cluster.shutdown()
            if self.temporary is not None:
                self.temporary.cleanup()
        return self.report

    def _mount_tmpfs(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(self.checkpoints)],
            capture_output=True,
            text=True,
            check=False,
        )
        self.mounted = proc.returncode == 0
        if not self.mounted:
            print(f"disk-full faults skipped: cannot mount a tmpfs ({proc.stderr.strip()})")


def cmd_soak(args: argparse.Namespace) -> None:
    try:
        fields = (args.algo, args.minutes, args.seed, args.nodes, args.step_latency, args.faults)
        soak = Soak(*fields, args.override, Path(args.runs_dir) if args.runs_dir else None)
    except ValueError as err:
        raise SystemExit(f"soak: {err}") from None
    print_report(report := soak.run())
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2, default=str))
