"""Benchmarks, soaks and test harnesses of soulsai_ray: measured, not asserted.

Run ``python -m soulsai_bench --help`` for the benchmarks (solve, lockstep, learner, throughput,
scale, soak). The library never imports this package. It works from a checkout (an editable
install): the benchmarks run ``scripts/train.py`` and the cluster scripts next to it.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: ``conf/``, ``scripts/`` and the venvs live here."""
SCRIPTS = ROOT / "scripts"
"""What a user runs: ``train.py``, ``start_head.sh``, ``join_cluster.sh``."""
TRAIN_SCRIPT = SCRIPTS / "train.py"
