"""TensorBoard event files of scalars, written with TensorBoard's own event writer.

The run's driver logs scalars only; this writes the same events as
``torch.utils.tensorboard.SummaryWriter.add_scalar`` without importing torch into the driver (a
second or two of start-up on a small machine).
"""

from __future__ import annotations

import time

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class ScalarWriter:
    """Appends scalar events to a new event file in ``log_dir`` (created if missing).

    Events are queued and written by TensorBoard's writer thread: at most 10 wait, and the
    file is flushed at least every 120 s and on :meth:`close` (SummaryWriter's defaults).
    """

    def __init__(self, log_dir: str) -> None:
        self._events = EventFileWriter(log_dir, max_queue_size=10, flush_secs=120)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Queues ``value`` under ``tag`` at ``step``, stamped with the wall time now."""
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._events.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self) -> None:
        """Writes every queued event to disk."""
        self._events.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        self._events.close()
