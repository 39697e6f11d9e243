"""Drops TensorFlow's C++ log lines from file descriptor 2; everything else passes.

TensorFlow 2.21 prints its start-up lines (CUDA probing, oneDNN notices, "All
log messages before absl::InitializeLog()") from C++ before any log level
applies, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide them. This routes fd 2
through a pipe and a thread that forwards every line except C++ log lines
(absl/glog lines naming a .cc/.h file, tsl lines, the absl init notice).
Python's own messages, ours included, pass unchanged. ``stop()`` restores
fd 2 and forwards what is left; it runs at exit.
"""

import atexit
import os
import re
import sys
import threading

_CPP_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+\.(?:cc|h|cpp|c):\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate)")

_state = {}


def start() -> None:
  """Starts filtering fd 2 (idempotent)."""
  if _state:
    return
  sys.stderr.flush()
  original = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)

  def forward():
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
      pending = b""
      while True:
        chunk = pipe.read(65536)
        if not chunk:
          break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
          if not _CPP_LINE.match(line):
            os.write(original, line + b"\n")
      if pending and not _CPP_LINE.match(pending):
        os.write(original, pending)

  thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
  thread.start()
  _state.update(original=original, thread=thread)
  atexit.register(stop)


def stop() -> None:
  """Restores fd 2 and waits for the remaining lines to be forwarded."""
  if not _state:
    return
  try:
    sys.stderr.flush()
  except (OSError, ValueError):
    pass
  os.dup2(_state["original"], 2)  # closes the pipe's last write end: the thread sees EOF
  _state["thread"].join(timeout=5)
  _state.clear()
