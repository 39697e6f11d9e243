"""Retraining on two workers (MultiWorkerMirroredStrategy over loopback) equals one process.

Both workers and the one-process reference run the real ``pipelines.compress``
with the same flags (global batch 2: one row per worker); the workers differ
only in ``TF_CONFIG`` and ``--run_dir``. Every worker must end with the
reference's per-matrix sparsity (tfmot's masks are computed in the
cross-replica context from the mirrored weights, so they must be identical) and
its perplexity within ``PERPLEXITY_RTOL`` (the gradient of the global batch is
summed in another order; measured difference ~3e-8 relative).

Marked ``multi_worker``: three compression runs (two at once), minutes on 2
shared cores; part of the default suite, deselect with ``-m 'not multi_worker'``.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.multi_worker

PERPLEXITY_RTOL = 1e-4
TEXT = "../shared/data/bilm_tf_fixture/train/data.txt"
FLAGS = ["--flagfile=pipelines/flags/tiny_compress.flags", "--sparsity_sweep=0.5",
         "--tflite_quantization=", "--num_parity_sentences=1"]  # no TFLite: not compared


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start(flags, tf_config=None):
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  if tf_config is not None:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen([sys.executable, "-m", "pipelines.compress", *flags], cwd=REPO_ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)


def _finish(proc):
  try:
    _, err = proc.communicate(timeout=900)
  except subprocess.TimeoutExpired:
    proc.kill()
    _, err = proc.communicate()
  assert proc.returncode == 0, err[-3000:]


def _variant(run_dir):
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    (variant,) = json.load(f)["variants"]
  return variant


def test_two_workers_retrain_to_the_sparsity_and_perplexity_of_one_process(tiny_run_dir,
                                                                           tmp_path):
  flags = FLAGS + [f"--model_dir={tiny_run_dir}"]
  reference = _start(flags + [f"--run_dir={tmp_path / 'one'}"])
  _finish(reference)
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = [_start(flags + [f"--run_dir={tmp_path / f'worker{i}'}"],
                  {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
           for i in range(2)]
  try:
    for proc in procs:
      _finish(proc)
  finally:
    for proc in procs:
      if proc.poll() is None:
        os.killpg(proc.pid, 9)
        proc.wait()

  one = _variant(tmp_path / "one")
  assert one["retraining"]["num_replicas"] == 1
  for i in range(2):
    got = _variant(tmp_path / f"worker{i}")
    assert got["retraining"]["num_replicas"] == 2
    assert got["sparsity"] == one["sparsity"]
    assert got["sparsity"]["per_weight"]["softmax/kernel"] == pytest.approx(0.5, abs=0.01)
    for key in ("forward", "backward", "mean"):
      assert got["perplexity"][key] == pytest.approx(one["perplexity"][key], rel=PERPLEXITY_RTOL)
