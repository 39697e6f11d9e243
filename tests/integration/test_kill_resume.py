"""Crash safety of the entry points: SIGKILL at random moments, then the same command again.

Each test runs the real command (``python -m pipelines.…``) in a subprocess on a
tiny model and corpus: once uninterrupted (the reference, timed from taking its
folder's lock), then again into a new run folder, killed with SIGKILL (the
whole process group) at seeded random moments of its work (fractions of the
reference's time, counted from taking the lock), each restart resuming what the
last one left (two kills for training and retraining, one for threshold
pruning and evaluation), and finally to completion with the same flags (no
--overwrite). After every kill, no artifact may look complete
without being so; at the end, no temporary is left and the figures of
``metrics.json`` (``evaluation.json`` for pipelines.evaluate) equal the
reference's: exactly for threshold pruning and evaluation, within
``RETRAIN_RTOL`` for training and retraining (a resumed run restores the model,
the optimizer, the step and the tfmot pruning state from a checkpoint and
replays the same batches; the tolerance only allows for float summation order).

Marked ``crash``: 16 TensorFlow process starts, several minutes on 2 shared
cores; part of the default suite, deselect with ``-m 'not crash'``.
"""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.crash

SEED = 13
# Kill delays, after the command took its folder's lock, are drawn from this
# range of the uninterrupted run's time from taking the lock to its end. Every
# restart resumes with less work left, so the same range lands later each time.
DELAY_FRACTIONS = (0.1, 0.6)
RETRAIN_RTOL = 1e-5
# Figures that measure time, not the model: they differ between any two runs.
TIMING_KEYS = {"seconds", "wall_seconds", "train_seconds", "tokens_per_second",
               "resumed_from_step", "latency"}
# SavedModel sizes depend on what the process traced before the export
# (generated function and input names carry a per-process counter): the raw
# size by a few bytes, its zip by up to ~4 % (measured 79,930 vs 77,073 bytes
# for a variant exported without the dense model before it). Compared within:
SAVED_MODEL_SIZE_RTOL = {"saved_model_bytes": 1e-3, "saved_model_zip_bytes": 0.1}

TEXT = "../shared/data/bilm_tf_fixture/train/data.txt"
TRAIN_FLAGS = ["--flagfile=pipelines/flags/tiny.flags", "--num_epochs=2"]
THRESHOLD_FLAGS = [f"--eval={TEXT}", "--method=threshold", "--sparsity_sweep=0.5",
                   "--tflite_quantization=none", "--num_parity_sentences=1"]
RETRAIN_FLAGS = ["--flagfile=pipelines/flags/tiny_compress.flags", "--sparsity_sweep=0.5",
                 "--tflite_quantization=none", "--checkpoint_every_steps=2"]
EVALUATE_FLAGS = [f"--perplexity_corpus={TEXT}", "--latency=false"]
TEMPORARY = re.compile(r"^\..+\.tmp-[0-9a-f]{8}")


def _command(module, flags):
  return [sys.executable, "-m", module, *flags]


def _start(module, flags):
  # stderr to a file, not a pipe: nobody reads a pipe while the command works.
  log = tempfile.TemporaryFile("w+")
  proc = subprocess.Popen(_command(module, flags), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                          stderr=log, text=True, start_new_session=True)
  proc.log = log
  return proc


def _wait_for_lock(proc, folder) -> bool:
  """Waits until ``proc`` holds the folder's lock (its pid is in the lock file); False if it ended."""
  lock = os.path.join(folder, ".lock")
  while proc.poll() is None:
    try:
      with open(lock, encoding="ascii") as f:
        if f.read().strip() == str(proc.pid):
          return True
    except FileNotFoundError:
      pass
    time.sleep(0.05)
  return False


def _finish(proc):
  proc.wait(timeout=900)
  proc.log.seek(0)
  assert proc.returncode == 0, proc.log.read()[-3000:]


def _run(module, flags, folder) -> float:
  """Runs the command to completion; returns its seconds from taking the folder's lock."""
  proc = _start(module, flags)
  _wait_for_lock(proc, folder)
  start = time.monotonic()
  _finish(proc)
  return time.monotonic() - start


def _run_killed(module, flags, folder, delay: float) -> bool:
  """Starts the command and SIGKILLs its process group ``delay`` s after it took the folder's
  lock (every kill lands in the work, none in the start-up); False if it finished first."""
  proc = _start(module, flags)
  _wait_for_lock(proc, folder)
  try:
    proc.wait(timeout=delay)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True
  _finish(proc)
  return False


def _kill_and_resume(module, flags, folder, work_seconds: float, seed: int, kills: int,
                     check) -> list:
  """Kills the command ``kills`` times at seeded random moments of its work, checking the
  folder after each, then runs it to completion; returns the delays used."""
  rng = random.Random(seed)
  delays = [rng.uniform(*DELAY_FRACTIONS) * work_seconds for _ in range(kills)]
  for delay in delays:
    if _run_killed(module, flags, folder, delay):
      # Shown with -s or on failure: which stage the kill hit.
      print(f"{module} killed {delay:.1f} s after taking the lock; it had written: "
            f"{_written(folder)}")
      check()
  _run(module, flags, folder)
  check()
  return delays


def _written(folder) -> str:
  done = sorted(os.path.relpath(os.path.dirname(p), folder) for p in glob.glob(
      os.path.join(folder, "**", "*.json"), recursive=True)
      if os.path.basename(p) in ("metrics.json", "evaluation.json"))
  checkpoints = sorted(os.path.basename(p)[:-len(".index")] for p in glob.glob(
      os.path.join(folder, "**", "checkpoints", "*.index"), recursive=True))
  return f"completion markers in {done or 'none'}, checkpoints {checkpoints or 'none'}"


def _figures(value):
  """``value`` without the timing entries."""
  if isinstance(value, dict):
    return {k: _figures(v) for k, v in value.items() if k not in TIMING_KEYS}
  if isinstance(value, list):
    return [_figures(v) for v in value]
  return value


def _assert_close(got, want, rtol, where="metrics"):
  if isinstance(want, dict):
    assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
    for k in want:
      _assert_close(got[k], want[k], rtol, f"{where}.{k}")
  elif isinstance(want, list):
    assert isinstance(got, list) and len(got) == len(want), (where, got, want)
    for i, (g, w) in enumerate(zip(got, want)):
      _assert_close(g, w, rtol, f"{where}[{i}]")
  elif where.rsplit(".", 1)[-1] in SAVED_MODEL_SIZE_RTOL and want is not None:
    assert got == pytest.approx(want, rel=SAVED_MODEL_SIZE_RTOL[where.rsplit(".", 1)[-1]]), where
  elif isinstance(want, float) and rtol:
    assert got == pytest.approx(want, rel=rtol), where
  else:
    assert got == want, where


def _check_json_whole(run_dir):
  for path in glob.glob(os.path.join(run_dir, "**", "*.json"), recursive=True):
    with open(path, encoding="utf-8") as f:
      json.load(f)  # a half-written file raises


def _assert_no_leftovers(run_dir):
  left = []
  for root, dirs, names in os.walk(run_dir):
    left += [os.path.join(root, n) for n in dirs + names if TEMPORARY.match(n)]
    if os.path.basename(root) == "checkpoints":
      left += [os.path.join(root, d) for d in dirs if d.endswith("_temp")]
  assert not left


def _check_training_folder(run_dir):
  _check_json_whole(run_dir)
  if os.path.exists(os.path.join(run_dir, "metrics.json")):
    assert os.path.exists(os.path.join(run_dir, "model_weights.h5"))
    assert os.path.exists(os.path.join(run_dir, "saved_model", "saved_model.pb"))
  state = os.path.join(run_dir, "checkpoints", "checkpoint")
  if os.path.exists(state):
    latest = re.search(r'^model_checkpoint_path: "(.+)"', open(state).read(), re.M).group(1)
    assert os.path.exists(os.path.join(run_dir, "checkpoints", latest + ".index"))


def _check_compression_folder(run_dir):
  """A variant with metrics.json has every artifact; a run with metrics.json, its report."""
  _check_json_whole(run_dir)
  for variant in glob.glob(os.path.join(run_dir, "dense")) + glob.glob(
      os.path.join(run_dir, "variants", "*")):
    if os.path.exists(os.path.join(variant, "metrics.json")):
      for name in ("config.json", "saved_model/saved_model.pb", "saved_model.zip",
                   "bilm_none.tflite"):
        assert os.path.exists(os.path.join(variant, name)), (variant, name)
  if os.path.exists(os.path.join(run_dir, "metrics.json")):
    assert os.path.exists(os.path.join(run_dir, "summary.md"))
    assert os.listdir(os.path.join(run_dir, "tensorboard", "hparams"))


def _read(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def reference_training(shared_data, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("kill_resume") / "train")
  return run_dir, _run("pipelines.train", TRAIN_FLAGS + [f"--run_dir={run_dir}"], run_dir)


@pytest.fixture(scope="module")
def reference_threshold(reference_training, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("kill_resume") / "threshold")
  flags = THRESHOLD_FLAGS + [f"--model_dir={reference_training[0]}", f"--run_dir={run_dir}"]
  return run_dir, _run("pipelines.compress", flags, run_dir)


def test_training_killed_at_random_moments_resumes_to_the_same_figures(reference_training,
                                                                       tmp_path):
  reference, seconds = reference_training
  run_dir = str(tmp_path / "train")
  _kill_and_resume("pipelines.train", TRAIN_FLAGS + [f"--run_dir={run_dir}"], run_dir, seconds,
                   SEED, 2, lambda: _check_training_folder(run_dir))
  _assert_no_leftovers(run_dir)
  got, want = _read(os.path.join(run_dir, "metrics.json")), _read(
      os.path.join(reference, "metrics.json"))
  _assert_close(_figures(got), _figures(want), RETRAIN_RTOL)


def test_threshold_compression_killed_at_random_moments_ends_with_identical_figures(
    reference_training, reference_threshold, tmp_path):
  reference, seconds = reference_threshold
  run_dir = str(tmp_path / "threshold")
  flags = THRESHOLD_FLAGS + [f"--model_dir={reference_training[0]}", f"--run_dir={run_dir}"]
  _kill_and_resume("pipelines.compress", flags, run_dir, seconds, SEED + 1, 1,
                   lambda: _check_compression_folder(run_dir))
  _assert_no_leftovers(run_dir)
  got, want = _read(os.path.join(run_dir, "metrics.json")), _read(
      os.path.join(reference, "metrics.json"))
  _assert_close(_figures(got), _figures(want), rtol=0)


def test_retraining_killed_at_random_moments_resumes_to_the_same_figures(reference_training,
                                                                         tmp_path):
  flags = RETRAIN_FLAGS + [f"--model_dir={reference_training[0]}"]
  reference = str(tmp_path / "reference")
  seconds = _run("pipelines.compress", flags + [f"--run_dir={reference}"], reference)
  run_dir = str(tmp_path / "retrain")
  _kill_and_resume("pipelines.compress", flags + [f"--run_dir={run_dir}"], run_dir, seconds,
                   SEED + 2, 2, lambda: _check_compression_folder(run_dir))
  _assert_no_leftovers(run_dir)
  got, want = _read(os.path.join(run_dir, "metrics.json")), _read(
      os.path.join(reference, "metrics.json"))
  _assert_close(_figures(got), _figures(want), RETRAIN_RTOL)


def test_evaluation_killed_at_random_moments_ends_with_identical_figures(reference_threshold,
                                                                         tmp_path):
  target = reference_threshold[0]
  reference = str(tmp_path / "reference")
  seconds = _run("pipelines.evaluate", EVALUATE_FLAGS + [f"--target={target}",
                                                         f"--out_dir={reference}"], reference)
  out_dir = str(tmp_path / "evaluation")
  _kill_and_resume("pipelines.evaluate", EVALUATE_FLAGS + [f"--target={target}",
                                                           f"--out_dir={out_dir}"],
                   out_dir, seconds, SEED + 3, 1, lambda: _check_json_whole(out_dir))
  _assert_no_leftovers(out_dir)
  got, want = _read(os.path.join(out_dir, "evaluation.json")), _read(
      os.path.join(reference, "evaluation.json"))
  _assert_close(_figures(got), _figures(want), rtol=0)


def test_a_second_process_on_a_running_folder_is_refused(shared_data, tmp_path):
  run_dir = tmp_path / "train"
  flags = TRAIN_FLAGS + [f"--run_dir={run_dir}", "--num_epochs=1000"]
  first = subprocess.Popen(_command("pipelines.train", flags), cwd=REPO_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
  try:
    lock = run_dir / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()):
      assert first.poll() is None and time.monotonic() < deadline
      time.sleep(0.2)
    second = subprocess.run(_command("pipelines.train", flags), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    assert f"another process (pid {first.pid}) is already running in {run_dir}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.poll() is None  # the first one goes on
  finally:
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
