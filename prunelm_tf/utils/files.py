"""Atomic artifact writes and run-folder bookkeeping.

Every artifact is written under a temporary name in its final directory and
renamed when complete, so a crash never leaves a half-written file or model
that looks whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import uuid
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

from absl import logging

# The lock file of a run folder (``run_dir_lock``); run-folder bookkeeping
# ignores and keeps it.
LOCK_FILE = ".lock"

# The marker file that makes a folder provably a run folder of this project
# (``mark_run_dir``): only such a folder may be deleted by --overwrite.
RUN_MARKER = ".prunelm_tf_run"
_MARKER_TOOL = "prunelm_tf"


# Names of what a killed process leaves behind: ``atomic_path`` temporaries
# (``.NAME.tmp-XXXXXXXX``, optionally with a suffix a writer added, e.g. ".h5"),
# and TensorFlow checkpoint shards written before they are merged
# (``checkpoints/ckpt-N_temp/``).
_STALE_TEMPORARY = re.compile(r"^\..+\.tmp-[0-9a-f]{8}(\.[A-Za-z0-9]+)?$")
_STALE_CHECKPOINT_SHARDS = re.compile(r"^.+_temp$")


def _tmp_name(path: str) -> str:
  head, tail = os.path.split(os.path.abspath(path))
  return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside ``path``; renamed to ``path`` on success.

  Works for files and directories (e.g. a SavedModel). An existing ``path``
  is replaced only once the new one is complete.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = _tmp_name(path)
  try:
    yield tmp
    if os.path.isdir(tmp) and os.path.exists(path):
      old = _tmp_name(path)
      os.replace(path, old)
      os.replace(tmp, path)
      if os.path.isdir(old):
        shutil.rmtree(old, ignore_errors=True)
      else:
        os.remove(old)
    else:
      os.replace(tmp, path)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    f.write(text)


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _input_paths(spec: str) -> list:
  """The real paths an input flag value names (a file, a folder or a glob)."""
  if not spec or spec.startswith("tfds:"):
    return []
  matches = glob.glob(spec) if glob.has_magic(spec) else [spec]
  return [os.path.realpath(m) for m in matches or [spec]]


def _inside(path: str, folder: str) -> bool:
  """Whether real path ``path`` is ``folder`` or lies below it."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_path(output: str, inputs: Mapping[str, str], *, flag_name: str,
                      may_lie_inside: Sequence[str] = ()) -> None:
  """Refuses an output that is, holds or lies inside an input: the one rule of every entry point.

  Args:
    output: a run folder, an output folder or an output file about to be written.
    inputs: flag name -> value (a file, folder or glob; ``tfds:`` specs and
      empty values are skipped), e.g. ``{"--model_dir": "runs/ptb"}``.
    flag_name: the output's flag, named in the message.
    may_lie_inside: input flags that ``output`` may lie inside (never be or
      hold), because the entry point documents it (``pipelines.evaluate``'s
      default ``--out_dir`` is ``TARGET/evaluation``).

  Raises:
    ValueError: the output overlaps an input. Nothing has been touched.
  """
  target = os.path.realpath(output)
  for flag, spec in inputs.items():
    for path in _input_paths(spec):
      if _inside(path, target):
        raise ValueError(
            f"{flag_name}={output} is or holds the input {flag}={spec}; a run never writes "
            f"into (or, with --overwrite, deletes) its own input. Choose a {flag_name} outside "
            "every input.")
      if _inside(target, path) and os.path.isdir(path) and flag not in may_lie_inside:
        raise ValueError(
            f"{flag_name}={output} lies inside the input {flag}={spec}; a run never writes "
            f"into its own input (nothing was written or deleted). Choose a "
            f"{flag_name} outside every input folder.")


def read_config_json(path: str) -> Any:
  """Reads a run folder's ``config.json``; a corrupt file is named in the error."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (ValueError, RecursionError) as e:
    # ValueError: JSONDecodeError, UnicodeDecodeError, integers beyond Python's
    # digit limit; RecursionError: absurdly deep nesting.
    raise ValueError(f"{path} is not valid JSON ({e}); restore it from the run's flags.txt "
                     "or choose a new run folder.") from None


def is_project_run_dir(run_dir: str) -> bool:
  """Whether ``run_dir`` holds the marker this project writes into every run folder it makes.

  The marker is a small regular file (not a link) ``RUN_MARKER`` whose JSON
  names this project; a folder merely without ``config.json``, or with a
  ``config.json`` of some other tool, is never taken for one of ours.
  """
  path = os.path.join(run_dir, RUN_MARKER)
  if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 4096:
    return False
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f).get("tool") == _MARKER_TOOL
  except (OSError, ValueError, AttributeError):
    return False


def mark_run_dir(run_dir: str) -> None:
  """Writes the marker that makes ``run_dir`` provably a run folder of this project."""
  if not is_project_run_dir(run_dir):
    write_json(os.path.join(run_dir, RUN_MARKER),
               {"tool": _MARKER_TOOL, "meaning": "a run folder made by PruneLM-TF; "
                "--overwrite may delete this folder"})


def _git_work_tree_in(folder: str) -> Optional[str]:
  """A ``.git`` entry at or below ``folder`` (the folder holds a git work tree), else None."""
  for root, dirs, names in os.walk(folder):
    if ".git" in dirs or ".git" in names:
      return os.path.join(root, ".git")
  return None


def check_deletable(run_dir: str, inputs: Mapping[str, str], *,
                    flag_name: str = "--run_dir") -> None:
  """Refuses to delete ``run_dir`` unless it is provably a run folder of this project.

  The rule of every entry point's ``--overwrite``: the folder holds this
  project's marker (``mark_run_dir``), is not and does not hold the current
  directory, holds no git work tree, and is not, holds and lies inside no input.

  Raises:
    ValueError: one of the rules is broken; the message says which. Nothing
      has been deleted.
  """
  target = os.path.realpath(run_dir)
  keep = (f"the folder was not deleted. Choose a new {flag_name}, or delete the folder yourself "
          "if it is yours to lose.")
  if _inside(os.path.realpath(os.getcwd()), target):
    raise ValueError(f"--overwrite would delete {flag_name}={run_dir}, which is or holds the "
                     f"current directory; {keep}")
  git = _git_work_tree_in(target)
  if git is not None:
    raise ValueError(f"--overwrite would delete {flag_name}={run_dir}, which holds a git work "
                     f"tree ({git}); {keep}")
  check_output_path(run_dir, inputs, flag_name=flag_name)
  if not is_project_run_dir(target):
    raise ValueError(
        f"--overwrite would delete {flag_name}={run_dir}, which is not a run folder of "
        f"PruneLM-TF (it lacks the {RUN_MARKER} marker every run folder this project makes "
        f"holds; folders made before the marker existed lack it too); {keep}")


def check_run_dir(run_dir: str, config_json: str, *, overwrite: bool,
                  flag_name: str = "--run_dir",
                  inputs: Optional[Mapping[str, str]] = None,
                  canonical: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
                  ) -> str:
  """What ``prepare_run_dir`` would do with ``run_dir``, checked without writing anything.

  Call it before taking ``run_dir_lock`` (which creates the folder and its
  lock file), so that a refused folder is left exactly as it was.

  Args: as ``prepare_run_dir``.

  Returns:
    "new" (empty, missing, or ours without a config yet), "resume" (holds this
    run) or "replace" (holds another run of ours and ``overwrite`` is set).

  Raises:
    ValueError: the folder overlaps an input, holds another run and
      ``overwrite`` is False, or would be deleted against `check_deletable`.
  """
  inputs = inputs or {}
  check_output_path(run_dir, inputs, flag_name=flag_name)
  config_path = os.path.join(run_dir, "config.json")
  if os.path.exists(config_path):
    existing = read_config_json(config_path)
    if canonical is not None:
      try:
        existing = canonical(existing)
      except (ValueError, TypeError):
        pass
    if existing == json.loads(config_json):
      return "resume"
    if not overwrite:
      changed = sorted(_diff_keys(existing, json.loads(config_json)))
      raise ValueError(
          f"{flag_name}={run_dir} holds a different run (config.json differs in: "
          f"{', '.join(changed[:10])}). Choose a new {flag_name}, restore the flags of that "
          "run to resume it, or pass --overwrite to delete it and start over.")
    check_deletable(run_dir, inputs, flag_name=flag_name)
    return "replace"
  if is_project_run_dir(run_dir):
    return "new"  # ours, killed before its config.json was written
  if os.path.isdir(run_dir) and [e for e in os.listdir(run_dir) if e != LOCK_FILE]:
    if not overwrite:
      raise ValueError(
          f"{flag_name}={run_dir} is not empty and is not a run folder of this tool. Choose a "
          f"new {flag_name}.")
    check_deletable(run_dir, inputs, flag_name=flag_name)
  return "new"


def prepare_run_dir(run_dir: str, config_json: str, *, overwrite: bool,
                    flag_name: str = "--run_dir",
                    inputs: Optional[Mapping[str, str]] = None,
                    canonical: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
                    ) -> bool:
  """Checks that ``run_dir`` is new or holds this same run, and marks it as ours.

  Args:
    run_dir: the run folder.
    config_json: the run's config, serialised as in ``config.json``.
    overwrite: delete a run folder of this project that holds a different run
      (only one that passes `check_deletable`).
    flag_name: named in the error message.
    inputs: flag name -> path (file, folder or glob) of every input of the
      run; a run folder that is, holds or lies inside one is refused (see
      `check_output_path`).
    canonical: rewrites a recorded config.json as this version would write it
      (fields added since, at their default); a record it cannot read
      (ValueError) is compared as it is.

  Returns:
    True if the folder already holds this run (resume), False if new.

  Raises:
    ValueError: see `check_run_dir`.
  """
  state = check_run_dir(run_dir, config_json, overwrite=overwrite, flag_name=flag_name,
                        inputs=inputs, canonical=canonical)
  if state == "replace":
    _remove_run_dir(run_dir)
  os.makedirs(run_dir, exist_ok=True)
  # The marker comes before config.json: a folder of ours is always recognisable.
  mark_run_dir(run_dir)
  return state == "resume"


def remove_unused_run_dir(run_dir: str) -> bool:
  """Removes ``run_dir`` if it holds nothing but our marker, lock files and empty folders.

  For a run that was refused or failed in a folder it created itself: it leaves
  nothing behind. A folder holding anything else is kept. Returns whether it
  was removed.
  """
  for root, _, names in os.walk(run_dir):
    if any(n not in (LOCK_FILE, RUN_MARKER) for n in names):
      return False
  if os.path.isdir(run_dir) and not os.path.islink(run_dir):
    shutil.rmtree(run_dir)
    return True
  return False


def _remove_run_dir(run_dir: str) -> None:
  """Deletes the contents of a run folder (see `check_deletable`), keeping the folder.

  The lock file stays so that a process holding ``run_dir_lock`` keeps the
  lock through ``--overwrite`` (deleting it would let a second process create
  and lock a new one), and so does the marker: the folder is still ours.
  """
  for name in os.listdir(run_dir):
    if name in (LOCK_FILE, RUN_MARKER):
      continue
    entry = os.path.join(run_dir, name)
    if os.path.isdir(entry) and not os.path.islink(entry):
      shutil.rmtree(entry)
    else:
      os.remove(entry)


@contextlib.contextmanager
def run_dir_lock(run_dir: str, flag_name: str = "--run_dir") -> Iterator[str]:
  """Holds an exclusive lock on ``run_dir`` while the block runs.

  The lock is ``fcntl.flock`` on ``run_dir/.lock`` (created, with ``run_dir``,
  if missing), taken without waiting. The file holds the holder's pid for the
  message a second process gets. The kernel releases the lock when the
  holding process ends in any way, including SIGKILL, so a crashed run never
  leaves a stale lock; the file itself stays (deleting it would race with a
  process opening it). ``prepare_run_dir`` ignores and keeps it. Once the
  lock is held, the temporaries a killed holder left behind are removed
  (``remove_stale_temporaries``): nobody else can be writing them.

  Call ``check_run_dir`` first: taking the lock creates the
  folder and the lock file. A child made with ``os.fork`` shares the lock
  (and keeps it if it outlives the parent); ``subprocess`` children do not.

  Args:
    run_dir: the run folder.
    flag_name: the run folder's flag, named in the message.

  Yields:
    The lock file's path.

  Raises:
    ValueError: another process (or another ``run_dir_lock`` of this one)
      holds the lock; the message names its pid.
  """
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
      raise ValueError(f"another process (pid {holder}) is already running in {run_dir}; wait "
                       f"for it or choose another {flag_name}.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    removed = remove_stale_temporaries(run_dir)
    if removed:
      logging.info("Removed %d leftovers of an interrupted run in %s: %s", len(removed), run_dir,
                   ", ".join(os.path.relpath(p, run_dir) for p in removed))
    try:
      yield path
    finally:
      os.ftruncate(fd, 0)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def remove_stale_temporaries(run_dir: str) -> list:
  """Deletes what a killed process left half-written under ``run_dir``; returns the paths.

  These are ``atomic_path`` temporaries (never mistaken for artifacts, since
  the final names are only ever made by a rename, but they can be as large as
  a SavedModel) and TensorFlow's unmerged checkpoint shards
  (``checkpoints/ckpt-N_temp``; ``CheckpointManager`` only ever points at
  merged checkpoints). Call it only while holding ``run_dir_lock``. A
  sub-folder that holds its own lock file is another run folder (e.g. an
  evaluation folder inside a compression run) and is left alone.
  """
  removed = []
  for root, dirs, names in os.walk(run_dir):
    if root != run_dir and LOCK_FILE in names:
      dirs[:] = []
      continue
    in_checkpoints = os.path.basename(root) == "checkpoints"
    for name in list(dirs):
      if _STALE_TEMPORARY.match(name) or (in_checkpoints and _STALE_CHECKPOINT_SHARDS.match(name)):
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        removed.append(os.path.join(root, name))
        dirs.remove(name)
    for name in names:
      if _STALE_TEMPORARY.match(name):
        os.remove(os.path.join(root, name))
        removed.append(os.path.join(root, name))
  return sorted(removed)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list:
  if isinstance(a, dict) and isinstance(b, dict):
    keys = []
    for k in set(a) | set(b):
      keys += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    return keys
  return [] if a == b else [prefix.rstrip(".")]
