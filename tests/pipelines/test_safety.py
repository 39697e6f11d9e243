"""Nothing lost, nothing run, nothing stale: unsafe uses of every entry point, kept as tests.

Each case is one a user probe found (issue "Nothing lost, nothing run, nothing stale"):
a folder that --overwrite must never delete (the current directory, a git work tree, a
folder the project did not make, a folder inside an input), an output that must never
land on an input, code stored in a SavedModel that must never run, and evaluation figures
that must never outlive the settings they were measured with. The data-loss cases run on a
temporary folder that looks like a user's checkout: a `.git` and a file the user owns.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig
from prunelm_tf.evaluation import LatencyConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.utils import files
from tests.conftest import REPO_ROOT
from tests.dense_reuse import compress

USER_FILE = "notes.txt"


def _user_checkout(path):
  """A folder as a user has it: a git work tree with a file of theirs."""
  os.makedirs(os.path.join(path, ".git", "objects"), exist_ok=True)
  with open(os.path.join(path, ".git", "HEAD"), "w") as f:
    f.write("ref: refs/heads/main\n")
  with open(os.path.join(path, USER_FILE), "w") as f:
    f.write("mine\n")
  return str(path)


def _sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _intact(path):
  return (os.path.isfile(os.path.join(path, USER_FILE))
          and os.path.isfile(os.path.join(path, ".git", "HEAD")))


@pytest.fixture
def own_run(tiny_run_dir, tmp_path):
  """A copy of the tiny training run that a test may see written into (it never should)."""
  return shutil.copytree(tiny_run_dir, str(tmp_path / "model"))


def _entry_point(module, *flags, cwd=REPO_ROOT):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  return subprocess.run([sys.executable, "-m", f"pipelines.{module}", *flags], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=600)


# --- 1. --overwrite deletes only a provable run folder of this project -----------------

@pytest.mark.parametrize("module", ["compress", "train"])
def test_overwrite_of_the_current_directory_is_refused(module, tiny_run_dir, tiny_text,
                                                       tmp_path):
  checkout = _user_checkout(tmp_path / "checkout")
  flags = ([f"--model_dir={tiny_run_dir}", f"--eval={tiny_text}", "--method=threshold",
            "--sparsity_sweep=0.5", "--tflite_quantization="] if module == "compress" else
           [f"--train={tiny_text}", "--token_encoder=word", "--lstm_dim=8",
            "--projection_dim=4", "--n_layers=1", "--num_epochs=1"])
  result = _entry_point(module, *flags, "--run_dir=.", "--overwrite", cwd=checkout)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "error:" in result.stderr and "not deleted" in result.stderr
  assert _intact(checkout)
  assert sorted(os.listdir(checkout)) == [".git", USER_FILE]  # not even a lock file


def test_overwrite_of_a_folder_the_project_did_not_make_is_refused(tmp_path):
  for name, config in (("plain", None), ("foreign_config", '{"model": "theirs"}')):
    folder = _user_checkout(tmp_path / name)
    shutil.rmtree(os.path.join(folder, ".git"))
    if config:
      with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config)
    with pytest.raises(ValueError, match="not a run folder of PruneLM-TF.*not deleted"):
      files.prepare_run_dir(folder, '{"a": 1}', overwrite=True)
    assert os.path.isfile(os.path.join(folder, USER_FILE))


def test_overwrite_of_a_run_folder_holding_a_git_tree_or_the_cwd_is_refused(tmp_path,
                                                                            monkeypatch):
  run_dir = str(tmp_path / "run")
  files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False)
  files.write_text(os.path.join(run_dir, "config.json"), '{"a": 1}')
  _user_checkout(os.path.join(run_dir, "clone"))
  with pytest.raises(ValueError, match=r"holds a git work tree .*not deleted"):
    files.prepare_run_dir(run_dir, '{"a": 2}', overwrite=True)
  assert _intact(os.path.join(run_dir, "clone"))
  shutil.rmtree(os.path.join(run_dir, "clone"))
  os.makedirs(os.path.join(run_dir, "sub"))
  monkeypatch.chdir(os.path.join(run_dir, "sub"))
  with pytest.raises(ValueError, match="current directory.*not deleted"):
    files.prepare_run_dir(run_dir, '{"a": 2}', overwrite=True)
  assert os.path.isdir(os.path.join(run_dir, "sub"))


def test_overwrite_of_a_run_folder_of_this_project_deletes_it(tmp_path):
  run_dir = str(tmp_path / "run")
  assert files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False) is False
  files.write_text(os.path.join(run_dir, "config.json"), '{"a": 1}')
  files.write_text(os.path.join(run_dir, "old.txt"), "old")
  assert files.prepare_run_dir(run_dir, '{"a": 1}', overwrite=False) is True
  assert files.prepare_run_dir(run_dir, '{"a": 2}', overwrite=True) is False
  assert sorted(os.listdir(run_dir)) == [files.RUN_MARKER]


@pytest.mark.parametrize("overwrite", [False, True])
def test_run_dir_inside_the_model_dir_is_refused(overwrite, own_run, tiny_text):
  inner = os.path.join(own_run, "compress_inside")
  config = CompressConfig(model_dir=own_run, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.5,), tflite_quantization=())
  with pytest.raises(ValueError, match="lies inside the input --model_dir"):
    compress(config, inner, overwrite=overwrite)
  assert not os.path.exists(inner)


# --- 2. an output never lands on an input ---------------------------------------------

def test_embed_never_writes_into_its_model_folder(own_run, tmp_path):
  (tmp_path / "in.txt").write_text("the cat\n", encoding="utf-8")
  weights = os.path.join(own_run, "model_weights.h5")
  before = _sha256(weights)
  for output in (weights, os.path.join(own_run, "embeddings.hdf5")):
    result = _entry_point("embed", f"--model_dir={own_run}",
                          f"--input_file={tmp_path / 'in.txt'}", f"--output_file={output}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "inside the input --model_dir" in result.stderr
  assert _sha256(weights) == before
  assert not os.path.exists(os.path.join(own_run, "embeddings.hdf5"))


# --- 3. no code stored in a SavedModel runs -----------------------------------------

@pytest.fixture(scope="module")
def compressed(tiny_run_dir, tiny_text, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("safety") / "c")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.5,), tflite_quantization=("none",),
                          num_parity_sentences=1), run_dir)
  return run_dir


def _plant_writing_signature(variant_dir, written):
  """Re-saves the variant's SavedModel with a serving_default that also writes ``written``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from prunelm_tf.export.saved_model import load_saved_model, serving_function

  path = os.path.join(variant_dir, "saved_model")
  model = load_saved_model(path)
  serve = serving_function(model)
  spec = serve.structured_input_signature[0][0]

  @tf.function(input_signature=[spec])
  def evil(ids):
    tf.io.write_file(written, "ran")
    return serve(ids)

  shutil.rmtree(path)
  model.save(path, include_optimizer=False, save_format="tf",
             signatures={"serving_default": evil.get_concrete_function()})


def test_a_savedmodel_that_writes_files_is_refused_unrun(compressed, tmp_path):
  from prunelm_tf.export.saved_model import check_saved_model

  run = shutil.copytree(compressed, str(tmp_path / "run"))
  variant = os.path.join(run, "variants", "threshold_50")
  written = str(tmp_path / "written_by_the_model.txt")
  _plant_writing_signature(variant, written)
  with pytest.raises(ValueError, match="WriteFile"):
    check_saved_model(os.path.join(variant, "saved_model"))
  result = _entry_point("evaluate", f"--target={variant}", "--latency_runs=2",
                        "--latency_threads=1", "--latency_tokens=3",
                        f"--out_dir={tmp_path / 'eval'}")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "WriteFile" in result.stderr
  assert not os.path.exists(written)
  # A refused evaluation leaves nothing behind.
  assert not os.path.exists(tmp_path / "eval")


def test_savedmodel_latency_runs_a_graph_the_project_builds(compressed):
  from prunelm_tf.evaluation import latency

  ids = np.array([[1, 2, 3, 4]], np.int32)
  measured = latency.measure_latency(
      "saved_model", os.path.join(compressed, "variants", "threshold_50", "saved_model"), ids,
      threads=1, warmup=1, runs=2)
  assert measured["p50_ms"] > 0 and measured["output_shape"][0] == 1
  assert measured["graph"] == "rebuilt"


# --- 4. evaluation figures never outlive their settings --------------------------------

def test_evaluate_recomputes_when_its_settings_change(compressed, tiny_text, shared_data,
                                                      tmp_path):
  other = str(shared_data / "ptb" / "ptb.valid.txt")
  base = EvaluateConfig(target=compressed, variants=("threshold_50",),
                        perplexity_corpus=tiny_text, measure_latency=False)
  out = str(tmp_path / "e")
  first = evaluate(base, out)
  for changed in (dataclasses.replace(base, perplexity_corpus=other, max_sentences=20),
                  dataclasses.replace(base, perplexity_corpus=other, max_sentences=30)):
    again = evaluate(changed, out)
    fresh = evaluate(changed, str(tmp_path / f"fresh_{changed.max_sentences}"))
    assert again[0]["perplexity"] == fresh[0]["perplexity"]
    assert again[0]["perplexity"] != first[0]["perplexity"]
    recorded = files.read_json(os.path.join(out, "evaluate_config.json"))
    assert recorded["config"]["perplexity_corpus"] == other
    assert recorded["config"]["max_sentences"] == changed.max_sentences
    assert recorded["inputs"]["perplexity_corpus"]["sentences"] == changed.max_sentences
  # The same corpus path with other content is other settings too.
  copy = tmp_path / "corpus.txt"
  copy.write_text(open(tiny_text).read())
  a = evaluate(dataclasses.replace(base, perplexity_corpus=str(copy)), out)
  copy.write_text("the cat sat .\n" * 5)
  b = evaluate(dataclasses.replace(base, perplexity_corpus=str(copy)), out)
  assert a[0]["perplexity"] != b[0]["perplexity"]


def test_latency_is_measured_again_when_its_settings_change(compressed, tmp_path):
  config = EvaluateConfig(target=compressed, variants=("threshold_50",),
                          latency=LatencyConfig(runs=2, warmup=1, threads=(1,), num_tokens=3))
  out = str(tmp_path / "e")
  assert evaluate(config, out)[0]["latency"]["tflite"]["1"]["runs"] == 2
  longer = dataclasses.replace(config, latency=dataclasses.replace(config.latency, runs=3,
                                                                    num_tokens=4))
  entry = evaluate(longer, out)[0]
  assert entry["latency"]["tflite"]["1"]["runs"] == 3
  assert entry["latency"]["tflite"]["1"]["input_shape"] == [1, 6]
