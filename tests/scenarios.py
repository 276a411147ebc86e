"""A test's scenario run beside an experiment (imported by this name, which no other test folder
uses): a thread that acts on the running experiment, then stops it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soulsai_ray.experiment import Experiment


def run_beside(
    experiment: Experiment, scenario: Callable[[], None], stop_reason: str
) -> dict[str, Any]:
    """Runs ``experiment`` with ``scenario`` in a thread beside it.

    Args:
        experiment: The run; it ends at its own limits or once the scenario is over.
        scenario: What happens during the run (e.g. kill an actor, wait for it to come back).
        stop_reason: The run's stop reason once the scenario returns or raises.

    Returns:
        The run's summary.
    """

    def play() -> None:
        try:
            scenario()
        finally:
            experiment.stop(stop_reason)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    summary = experiment.run()
    thread.join(timeout=30)
    return summary
