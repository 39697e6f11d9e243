"""Thin absl entry points; the logic lives in prunelm_tf.

Importing this package (before TensorFlow) decides how loud TensorFlow is:
its C++ and Python log lines (CUDA probing, oneDNN notices, "Assets written
to", compiled-metrics warnings) are hidden unless the command line asks for
them with ``-v``, ``--verbosity=1`` (or more) or ``--debug``; the same flags
show the traceback of a user error (see `pipelines.cli.run`).
"""

import os
import sys


def _verbose_requested(argv) -> bool:
  for arg in argv:
    if arg in ("-v", "--debug") or arg.startswith("-v="):
      return True
    if arg.startswith("--verbosity=") or arg.startswith("-verbosity="):
      try:
        return int(arg.split("=", 1)[1]) >= 1
      except ValueError:
        return False
  return False


VERBOSE = _verbose_requested(sys.argv[1:])
if not VERBOSE:
  # Set before TensorFlow starts: the C++ lines come from its start-up, and
  # some of them ignore the level, so they are also filtered out of fd 2.
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  if sys.argv and os.path.basename(sys.argv[0]) != "pytest" and "pytest" not in sys.modules:
    from pipelines import _stderr_filter  # noqa: E402
    _stderr_filter.start()

from prunelm_tf import _keras_env  # noqa: E402,F401  (Keras 2 before TensorFlow)
