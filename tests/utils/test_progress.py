"""Progress lines when the output is not a terminal."""

import io

from prunelm_tf.utils.progress import Progress


def test_plain_lines_at_intervals_and_at_the_end():
  stream = io.StringIO()  # not a terminal
  progress = Progress(10, "epoch 1", interval_seconds=3600, stream=stream)
  assert progress.update(1, [("loss", 2.0)]) is None  # within the interval: silent
  line = progress.update(10, [("loss", 1.5)])
  assert line.startswith("epoch 1: step 10/10 (100 %)") and "loss 1.5" in line
  assert "\r" not in line and "steps/s" in line and "left" in line
  assert stream.getvalue() == ""  # lines go to the log, never carriage-return redraws


def test_tqdm_bars_are_off_in_log_files_and_short_loops(monkeypatch):
  import io  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from prunelm_tf.utils.progress import bar_disabled  # pylint: disable=import-outside-toplevel

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  monkeypatch.setattr(sys, "stderr", io.StringIO())
  assert bar_disabled(False) and bar_disabled(True)
  monkeypatch.setattr(sys, "stderr", Terminal())
  assert not bar_disabled(False) and bar_disabled(True)
