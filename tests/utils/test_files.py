"""Run-folder bookkeeping: no input is ever deleted, corrupt config.json is named, locks."""

import os
import signal
import subprocess
import sys

import pytest

from prunelm_tf.utils import files
from tests.conftest import REPO_ROOT


def _make(path, text="x"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _run(tmp_path, name="run", config='{"a": 1}'):
  """A run folder of this project (its marker, then its config.json)."""
  run_dir = str(tmp_path / name)
  os.makedirs(run_dir, exist_ok=True)
  files.mark_run_dir(run_dir)
  _make(os.path.join(run_dir, "config.json"), config)
  return run_dir


@pytest.mark.parametrize("overwrite", [False, True])
def test_run_dir_that_is_the_input_is_refused_and_kept(tmp_path, overwrite):
  model = _run(tmp_path, "model")
  _make(os.path.join(model, "model_weights.h5"))
  with pytest.raises(ValueError, match=r"--run_dir=.* is or holds the input --model_dir"):
    files.prepare_run_dir(model, '{"b": 2}', overwrite=overwrite, inputs={"--model_dir": model})
  assert os.path.exists(os.path.join(model, "model_weights.h5"))


def test_run_dir_holding_an_input_file_or_glob_is_refused(tmp_path):
  run_dir = _run(tmp_path)
  _make(os.path.join(run_dir, "data", "train.txt"))
  for spec in (os.path.join(run_dir, "data", "train.txt"), os.path.join(run_dir, "data", "*.txt")):
    with pytest.raises(ValueError, match="is or holds the input --train"):
      files.prepare_run_dir(run_dir, '{"b": 2}', overwrite=True, inputs={"--train": spec})
  assert os.path.exists(os.path.join(run_dir, "data", "train.txt"))


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_run_folder_inside_an_input_folder_is_refused_new_or_old(tmp_path, overwrite):
  model = _run(tmp_path, "model")
  inner = _run(tmp_path, os.path.join("model", "compress"))
  with pytest.raises(ValueError, match="lies inside the input --model_dir"):
    files.prepare_run_dir(inner, '{"b": 2}', overwrite=overwrite, inputs={"--model_dir": model})
  assert os.path.exists(os.path.join(inner, "config.json"))
  fresh = os.path.join(model, "compress_2")
  with pytest.raises(ValueError, match="lies inside the input --model_dir"):
    files.prepare_run_dir(fresh, '{"b": 2}', overwrite=overwrite, inputs={"--model_dir": model})
  assert not os.path.exists(fresh)


def test_symlinked_run_dir_to_the_input_is_refused(tmp_path):
  model = _run(tmp_path, "model")
  link = str(tmp_path / "link")
  os.symlink(model, link)
  with pytest.raises(ValueError, match="is or holds the input"):
    files.prepare_run_dir(link, '{"b": 2}', overwrite=True, inputs={"--model_dir": model})
  assert os.path.exists(os.path.join(model, "config.json"))


def test_overwrite_of_an_unrelated_run_still_works(tmp_path):
  model = _run(tmp_path, "model")
  other = _run(tmp_path, "other")
  assert files.prepare_run_dir(other, '{"b": 2}', overwrite=True, inputs={
      "--model_dir": model, "--train": "tfds:lm1b/train", "--eval": ""}) is False
  assert os.listdir(other) == [files.RUN_MARKER]
  assert os.path.exists(os.path.join(model, "config.json"))


def test_sibling_with_common_prefix_is_not_inside(tmp_path):
  model = _run(tmp_path, "model")
  sibling = _run(tmp_path, "model_compressed")
  assert files.prepare_run_dir(sibling, '{"b": 2}', overwrite=True,
                               inputs={"--model_dir": model}) is False


def test_corrupt_config_json_names_the_file(tmp_path):
  run_dir = _run(tmp_path, config='{"a": ')
  with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
    files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False)


def test_corrupt_config_json_beyond_json_decode_errors_is_named(tmp_path):
  for text in ("[" * 100_000, "1" * 5000):  # RecursionError, int digit limit
    run_dir = _run(tmp_path, config=text)
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
      files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False)


def test_a_canonical_form_lets_an_older_record_resume(tmp_path):
  run_dir = _run(tmp_path, config='{"a": 1, "added_later": 0}')
  drop_default = lambda d: {k: v for k, v in d.items() if not (k == "added_later" and v == 0)}
  assert files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False, canonical=drop_default)
  with pytest.raises(ValueError, match="differs in: added_later"):
    files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False)
  def unreadable(d):
    raise ValueError(f"not a config: {d}")
  with pytest.raises(ValueError, match="differs in: added_later"):
    files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False, canonical=unreadable)


# --- run_dir_lock ----------------------------------------------------------------

_HOLDER = """
import sys, time
from prunelm_tf.utils.files import run_dir_lock
with run_dir_lock(sys.argv[1]):
  print("locked", flush=True)
  time.sleep(600)
"""


def _start_holder(run_dir):
  proc = subprocess.Popen([sys.executable, "-c", _HOLDER, run_dir], cwd=REPO_ROOT,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_second_holder_in_the_same_process_is_refused_with_the_pid(tmp_path):
  run_dir = str(tmp_path / "run")
  with files.run_dir_lock(run_dir) as lock:
    assert open(lock).read() == f"{os.getpid()}\n"
    with pytest.raises(ValueError, match=rf"^another process \(pid {os.getpid()}\) is already "
                       rf"running in {run_dir}; wait for it or choose another --run_dir\.$"):
      with files.run_dir_lock(run_dir):
        pass
  with files.run_dir_lock(run_dir):  # released on exit
    pass


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
  run_dir = str(tmp_path / "run")
  proc = _start_holder(run_dir)
  try:
    with pytest.raises(ValueError, match=rf"another process \(pid {proc.pid}\) is already running"):
      with files.run_dir_lock(run_dir):
        pass
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
  assert proc.returncode == -signal.SIGKILL
  with files.run_dir_lock(run_dir):  # no stale lock after SIGKILL
    pass


def test_lock_is_released_after_an_exception(tmp_path):
  run_dir = str(tmp_path / "run")
  with pytest.raises(RuntimeError):
    with files.run_dir_lock(run_dir):
      raise RuntimeError("the run failed")
  with files.run_dir_lock(run_dir):
    pass


def test_prepare_run_dir_ignores_and_keeps_the_lock_file(tmp_path):
  run_dir = str(tmp_path / "run")
  with files.run_dir_lock(run_dir) as lock:
    # A folder holding only the lock is a new run folder, not a foreign one.
    assert files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False) is False
    _make(os.path.join(run_dir, "config.json"), '{"a": 1}')
    _make(os.path.join(run_dir, "checkpoints", "ckpt"))
    # --overwrite of a different run keeps the lock file (and so the lock) in place.
    assert files.prepare_run_dir(run_dir, '{"b": 2}', overwrite=True) is False
    assert sorted(os.listdir(run_dir)) == sorted([files.LOCK_FILE, files.RUN_MARKER])
    assert os.path.exists(lock)
    with pytest.raises(ValueError, match="already running"):
      with files.run_dir_lock(run_dir):
        pass


def test_compress_refuses_a_second_process_on_the_same_run_folder(tmp_path):
  """The lock as compress() takes it: a held lock makes a second run fail before any work."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  run_dir = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; from prunelm_tf.utils import files\n"
      f"with files.run_dir_lock({run_dir!r}):\n"
      "  print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match=rf"another process \(pid {holder.pid}\) is already "
                                         r"running in .*; wait for it or choose another"):
      with files.run_dir_lock(run_dir):
        pass
  finally:
    holder.kill()
    holder.wait()
  with files.run_dir_lock(run_dir):  # released by the kernel when the holder died
    time.sleep(0)


# --- leftovers of a killed run -----------------------------------------------------


def test_taking_the_lock_removes_what_a_killed_run_left_half_written(tmp_path):
  run_dir = tmp_path / "run"
  (run_dir / "variants" / "v" / ".saved_model.tmp-0123abcd").mkdir(parents=True)
  (run_dir / "variants" / "v" / ".saved_model.tmp-0123abcd" / "saved_model.pb").write_bytes(b"x")
  (run_dir / ".metrics.json.tmp-89abcdef").write_text("{")
  (run_dir / ".model_weights.h5.tmp-deadbeef.h5").write_bytes(b"")
  (run_dir / "checkpoints" / "ckpt-4_temp").mkdir(parents=True)
  kept = [run_dir / "metrics.json", run_dir / "checkpoints" / "ckpt-2.index",
          run_dir / ".hidden", run_dir / "notes.tmp-0123abcd", run_dir / "my_temp"]
  for path in kept:
    path.write_text("{}")
  # Another run folder inside (an evaluation folder) is its own holder's business.
  (run_dir / "evaluation").mkdir()
  (run_dir / "evaluation" / files.LOCK_FILE).write_text("")
  (run_dir / "evaluation" / ".evaluation.json.tmp-00000000").write_text("{")
  with files.run_dir_lock(str(run_dir)):
    pass
  left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
  assert left == sorted([".hidden", ".lock", "checkpoints/ckpt-2.index",
                         "evaluation/.evaluation.json.tmp-00000000", "evaluation/.lock",
                         "metrics.json", "my_temp", "notes.tmp-0123abcd"])
  assert not (run_dir / "checkpoints" / "ckpt-4_temp").exists()
  assert files.remove_stale_temporaries(str(run_dir)) == []
