"""How every entry point runs: quiet TensorFlow, user errors as one line, no traceback.

A user error (a bad flag value, a missing or malformed file) is an exception
the library raises on purpose with a message that names the flag or file and
the fix: ``ValueError``, ``TypeError``, ``FileNotFoundError`` and the other
``OSError`` kinds about paths. The command prints ``error: <message>`` on
stderr and exits with status 2. ``-v`` / ``--verbosity=1`` or ``--debug``
shows the traceback instead (and TensorFlow's own log lines).

A command line absl cannot parse (an integer flag given ``x``, an unknown or a
missing required flag) and an ``app.UsageError`` of an entry point's ``main``
are user errors too: ``error: <message>``, a hint to ``--helpfull`` and status
2, instead of absl's pages of help and status 1.
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
_FLAGS_HINT = "(run with --helpfull for the flags)"


def _exit_with_error(message: str, hint: str) -> None:
  """Prints ``error: <message>`` and the hint on stderr; exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  print(hint, file=sys.stderr)
  sys.stderr.flush()
  sys.exit(2)


def _parse_flags(argv: list) -> list:
  """absl's flag parsing, with a parse error reported like every other user error.

  Args:
    argv: The command line, program name first.

  Returns:
    The arguments absl did not consume, program name first (what ``main`` gets).
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    # No traceback even with --debug: it would show absl's parser, not the mistake.
    _exit_with_error(" ".join(str(e).split()) or type(e).__name__, _FLAGS_HINT)


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
    except app.UsageError as e:
      if verbose:
        raise
      _exit_with_error(str(e).strip() or type(e).__name__, _FLAGS_HINT)
    except USER_ERRORS as e:
      if verbose:
        raise
      _exit_with_error(str(e).strip() or type(e).__name__,
                       "(run again with --debug for the traceback)")

  app.run(wrapped, flags_parser=_parse_flags)
