"""One progress display per stage: a bar on a terminal, periodic plain lines otherwise.

Keras' Progbar redraws with carriage returns, which fills a log file with
one enormous line; when the output is not a terminal this prints one line
every ``interval_seconds`` (steps, rate, time left, the latest values).
"""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, Tuple

from absl import logging


class Progress:
  """``update(step, values)`` for a loop of ``total`` steps named ``stage``."""

  def __init__(self, total: int, stage: str, *, initial: int = 0,
               interval_seconds: float = 30.0, stream=None):
    self.total = max(int(total), 1)
    self.stage = stage
    self.interval = float(interval_seconds)
    self._stream = stream or sys.stdout
    self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
    self._start_step = int(initial)
    self._t0 = time.time()
    self._last = self._t0
    self._bar = None
    if self._tty:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      self._bar = tf.keras.utils.Progbar(self.total, stateful_metrics=None)
      self._bar.update(initial)

  def update(self, step: int, values: Sequence[Tuple[str, float]] = ()) -> Optional[str]:
    """Shows progress at ``step``; returns the plain line when one is printed."""
    if self._bar is not None:
      self._bar.update(step, values=list(values))
      return None
    now = time.time()
    if now - self._last < self.interval and step < self.total:
      return None
    self._last = now
    done = step - self._start_step
    rate = done / max(now - self._t0, 1e-9)
    left = (self.total - step) / rate if rate > 0 else float("inf")
    shown = "  ".join(f"{k} {v:.4g}" for k, v in values)
    line = (f"{self.stage}: step {step}/{self.total} ({100.0 * step / self.total:.0f} %)  "
            f"{rate:.2f} steps/s  {_duration(left)} left  {shown}".rstrip())
    logging.info("%s", line)
    return line


def bar_disabled(short: bool = False) -> bool:
  """tqdm's ``disable`` for a loop: no bar when it is short or stderr is not a terminal.

  A bar redrawn with carriage returns fills a log file with one enormous line;
  the loops that use tqdm log a plain line per stage (or epoch) instead.
  """
  return bool(short) or not bool(getattr(sys.stderr, "isatty", lambda: False)())


def _duration(seconds: float) -> str:
  if seconds == float("inf"):
    return "?"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
