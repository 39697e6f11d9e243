"""How every entry point runs: quiet TensorFlow, user errors as one line, no traceback.

A user error (a bad flag value, a missing or malformed file) is an exception
the library raises on purpose with a message that names the flag or file and
the fix: ``ValueError``, ``TypeError``, ``FileNotFoundError`` and the other
``OSError`` kinds about paths. The command prints ``error: <message>`` on
stderr and exits with status 2. ``-v`` / ``--verbosity=1`` or ``--debug``
shows the traceback instead (and TensorFlow's own log lines).
"""

import logging as std_logging
import sys

from absl import app
from absl import flags

import pipelines

_DEBUG = flags.DEFINE_bool("debug", False, "Show TensorFlow's log lines and the Python "
                           "traceback of errors (also -v / --verbosity=1).")

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError, FileExistsError)


def _not_a_library_info(record: std_logging.LogRecord) -> bool:
  """Keeps our records and warnings; drops TensorFlow's / Keras' own INFO lines."""
  path = record.pathname.replace("\\", "/")
  return record.levelno >= std_logging.WARNING or not any(
      part in path for part in ("/tensorflow/", "/tf_keras/", "/keras/", "/tensorboard/"))


def _quiet_tensorflow() -> None:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  tf.get_logger().setLevel(std_logging.ERROR)
  # TensorFlow's SavedModel code logs through absl ("Sharding callback duration",
  # "Writing fingerprint", signature renames): the same handler as ours.
  absl_logging.get_absl_handler().addFilter(_not_a_library_info)


def run(main) -> None:
  """``absl.app.run(main)`` with the error and logging policy of the module docstring."""

  def wrapped(argv):
    verbose = pipelines.VERBOSE or _DEBUG.value or flags.FLAGS["verbosity"].value >= 1
    if not verbose:
      _quiet_tensorflow()
    try:
      return main(argv)
    except USER_ERRORS as e:
      if verbose:
        raise
      message = str(e).strip() or type(e).__name__
      print(f"error: {message}", file=sys.stderr)
      print("(run again with --debug for the traceback)", file=sys.stderr)
      sys.stderr.flush()
      sys.exit(2)

  app.run(wrapped)
