"""evaluate() end to end on a tiny compression run: every entry, its numbers, resume, bad input;
pipelines.evaluate run to the end as a user starts it (a subprocess)."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig
from tests.dense_reuse import compress
from prunelm_tf.evaluation import LatencyConfig, ProbeConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.evaluation.variants import find_variants
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

WORDS_POS = "neural networks make use of language models".split()
WORDS_NEG = "the curse of dimensionality is a data sparsity problem".split()


@pytest.fixture(scope="module")
def compressed(tiny_run_dir, tiny_text, tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("eval") / "c")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                          sparsity_sweep=(0.5,), tflite_quantization=("none", "dynamic"),
                          num_parity_sentences=1), run_dir)
  return run_dir


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("sst2")
  for split, n in (("train", 24), ("dev", 8)):
    rows = ["sentence\tlabel"]
    for i in range(n):
      words = WORDS_POS if i % 2 else WORDS_NEG
      rows.append(" ".join(words[i % 3:]) + " \t" + str(i % 2))
    (d / f"{split}.tsv").write_text("\n".join(rows) + "\n")
  return str(d)


def test_every_variant_and_mode_is_evaluated(compressed, tiny_text, sst2_dir, tmp_path):
  config = EvaluateConfig(target=compressed, perplexity_corpus=tiny_text, sst2_dir=sst2_dir,
                          probe=ProbeConfig(epochs=3),
                          latency=LatencyConfig(runs=3, warmup=1, threads=(1,), num_tokens=5),
                          throughput_corpus=tiny_text, throughput_sentences=5)
  out = str(tmp_path / "e")
  entries = evaluate(config, out, group="threshold")
  assert [e["name"] for e in entries] == ["dense/none", "dense/dynamic", "threshold_50/none",
                                          "threshold_50/dynamic"]
  metrics = json.load(open(os.path.join(compressed, "metrics.json")))
  by_name = {e["name"]: e for e in entries}
  for e in entries:
    assert e["perplexity"]["mean"] > 1 and 0 <= e["sst2_accuracy"] <= 1
    assert e["sizes"]["tflite_zip_bytes"] > 0
    assert e["latency"]["tflite"]["1"]["p50_ms"] > 0
    assert e["throughput"]["tflite"]["1"]["sentences"] == 5
    assert e["throughput"]["tflite"]["1"]["words_per_second"] > 0
  # "none" perplexity is the Keras model's: the compression run measured the same.
  assert by_name["threshold_50/none"]["perplexity"]["forward"] == pytest.approx(
      metrics["variants"][0]["perplexity"]["forward"], rel=1e-5)
  # The quantized artifact has its own (close, not equal) perplexity.
  q, f = by_name["dense/dynamic"]["perplexity"]["mean"], by_name["dense/none"]["perplexity"]["mean"]
  assert q != f and abs(q / f - 1) < 0.2
  assert by_name["dense/none"]["latency"]["saved_model"]["1"]["p50_ms"] > 0
  assert by_name["dense/dynamic"]["latency"]["saved_model"] == {}
  assert by_name["threshold_50/none"]["sparsity"] == pytest.approx(0.5, abs=0.01)
  # Resume: finished entries are read back, not recomputed.
  stamp = os.path.getmtime(os.path.join(out, "threshold_50", "none", "evaluation.json"))
  assert evaluate(config, out, group="threshold") == entries
  # Latency is its own resumable pass: quality first without it, then only latency.
  assert os.path.exists(os.path.join(out, "threshold_50", "none", "latency.json"))
  quiet = str(tmp_path / "q")
  first = evaluate(dataclasses.replace(config, measure_latency=False), quiet, group="threshold")
  assert all(e["latency"] == {"tflite": {}, "saved_model": {}} for e in first)
  assert not os.path.exists(os.path.join(quiet, "dense", "none", "latency.json"))
  second = evaluate(config, quiet, group="threshold")
  assert [e["perplexity"] for e in second] == [e["perplexity"] for e in first]
  assert second[0]["latency"]["saved_model"]["1"]["p50_ms"] > 0
  assert os.path.getmtime(os.path.join(out, "threshold_50", "none", "evaluation.json")) == stamp


def test_one_variant_folder_and_filters(compressed, tmp_path):
  variants = find_variants(os.path.join(compressed, "variants", "threshold_50"))
  assert [v.name for v in variants] == ["threshold_50"]
  assert set(variants[0].tflite) == {"none", "dynamic"} and variants[0].vocab is not None
  entries = evaluate(EvaluateConfig(target=compressed, variants=("threshold_50",),
                                    quantization=("dynamic",), measure_latency=False),
                     str(tmp_path / "e"))
  assert [e["name"] for e in entries] == ["threshold_50/dynamic"]
  assert entries[0]["perplexity"] is None and entries[0]["sst2_accuracy"] is None


def test_training_run_folder_is_the_dense_variant(tiny_run_dir):
  (v,) = find_variants(tiny_run_dir)
  assert v.name == "dense" and v.config.token_encoder == "word"


def test_bad_input(compressed, tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    find_variants(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="neither a run folder"):
    find_variants(str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="not in"):
    evaluate(EvaluateConfig(target=compressed, variants=("retrain_90",)), str(tmp_path / "e"))
  with pytest.raises(ValueError, match="unknown quantization mode"):
    EvaluateConfig(target=compressed, quantization=("int4",))
  with pytest.raises(FileNotFoundError, match="train.tsv"):
    EvaluateConfig(target=compressed, sst2_dir=str(tmp_path))
  with pytest.raises(ValueError, match="set the model"):
    EvaluateConfig(target="")


def _tiny_conll(d):
  sentences = [[("neural", "I-ORG"), ("networks", "I-ORG"), ("make", "O")],
               [("language", "O"), ("models", "I-MISC")], [("the", "O"), ("data", "I-LOC")]]
  text = "-DOCSTART- -X- O O\n\n" + "\n\n".join(
      "\n".join(f"{w} NN I-NP {t}" for w, t in s) for s in sentences) + "\n"
  for name in ("eng.train", "eng.testa", "eng.testb"):
    (d / name).write_text(text)
  return str(d)


def _tiny_mrpc(d):
  rows = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
  for i in range(12):
    a = " ".join(WORDS_POS[i % 3:])
    b = a if i % 2 else " ".join(WORDS_NEG[i % 4:])
    rows.append(f"{i % 2}\t{i}\t{i + 100}\t{a}\t{b}")
  for name in ("train.tsv", "dev.tsv"):
    (d / name).write_text("\n".join(rows) + "\n")
  return str(d)


def _tiny_cola(d):
  rows = [f"s\t{i % 2}\t{'' if i % 2 else '*'}\t{' '.join((WORDS_POS if i % 2 else WORDS_NEG)[i % 3:])}"
          for i in range(12)]
  for name in ("train.tsv", "dev.tsv"):
    (d / name).write_text("\n".join(rows) + "\n")
  return str(d)


def test_ner_mrpc_and_cola_columns_for_every_entry(compressed, tmp_path):
  from prunelm_tf.evaluation.ner import NerConfig  # pylint: disable=import-outside-toplevel
  for name in ("conll", "mrpc", "cola"):
    (tmp_path / name).mkdir()
  config = EvaluateConfig(target=compressed, measure_latency=False,
                          ner_dir=_tiny_conll(tmp_path / "conll"),
                          ner=NerConfig(epochs=1, hidden_units=4, batch_size=2),
                          mrpc_dir=_tiny_mrpc(tmp_path / "mrpc"), probe=ProbeConfig(epochs=2),
                          cola_dir=_tiny_cola(tmp_path / "cola"),
                          quantization=("none", "dynamic"))
  entries = evaluate(config, str(tmp_path / "e"))
  assert {e["name"] for e in entries} == {"dense/none", "dense/dynamic", "threshold_50/none",
                                          "threshold_50/dynamic"}
  for e in entries:
    assert 0.0 <= e["ner_test_f1"] <= 1.0 and set(e["ner"]["test"]) == {"overall", "per_type"}
    assert 0.0 <= e["mrpc_accuracy"] <= 1.0 and 0.0 <= e["mrpc_f1"] <= 1.0
    assert -1.0 <= e["cola_mcc"] <= 1.0 and 0.0 <= e["cola_accuracy"] <= 1.0
    assert e["cola"]["num_dev"] == 12
  with pytest.raises(FileNotFoundError, match="--ner_dir=.* has no eng.train"):
    EvaluateConfig(target=compressed, ner_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="--cola_dir=.* has no train.tsv"):
    EvaluateConfig(target=compressed, cola_dir=str(tmp_path))


def test_ner_seeds_give_mean_and_spread(compressed, tmp_path):
  from prunelm_tf.evaluation.ner import NerConfig  # pylint: disable=import-outside-toplevel
  (tmp_path / "conll").mkdir()
  config = EvaluateConfig(target=compressed, variants=("dense",), quantization=("none",),
                          measure_latency=False, ner_dir=_tiny_conll(tmp_path / "conll"),
                          ner=NerConfig(epochs=1, hidden_units=4, batch_size=2),
                          ner_seeds=(0, 1, 2))
  (entry,) = evaluate(config, str(tmp_path / "e"))
  values = entry["ner"]["test_f1"]["values"]
  assert len(values) == 3 and entry["ner_test_f1"] == pytest.approx(sum(values) / 3)
  assert entry["ner_test_f1_std"] == pytest.approx(float(np.std(values, ddof=1)))
  for seeds in ((1,), (0, 0)):
    with pytest.raises(ValueError, match="--ner_seeds needs at least two distinct seeds"):
      EvaluateConfig(target=compressed, ner_seeds=seeds)


def test_a_variant_made_again_is_evaluated_again(tiny_run_dir, tiny_text, tmp_path):
  """A cached entry belongs to the artifact it measured: compress --overwrite invalidates it."""
  run_dir, out = str(tmp_path / "c"), str(tmp_path / "e")

  def make(layer_sparsity):
    compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, method="threshold",
                            sparsity_sweep=(0.5,), layer_sparsity=layer_sparsity,
                            tflite_quantization=("none",), num_parity_sentences=1),
             run_dir, overwrite=bool(layer_sparsity))
    config = EvaluateConfig(target=run_dir, variants=("threshold_50",), quantization=("none",),
                            perplexity_corpus=tiny_text, measure_latency=False)
    return evaluate(config, out)[0]

  first = make(())
  again = make(())  # nothing changed: read from the cache
  assert again == first and first["artifact_fingerprint"]
  # The same variant name, other weights (the softmax left dense).
  remade = make((("softmax", 0.0),))
  assert remade["artifact_fingerprint"] != first["artifact_fingerprint"]
  assert remade["perplexity"]["forward"] != pytest.approx(first["perplexity"]["forward"])
  with open(os.path.join(run_dir, "variants", "threshold_50", "metrics.json"),
            encoding="utf-8") as f:
    expected = json.load(f)["perplexity"]["forward"]
  assert remade["perplexity"]["forward"] == pytest.approx(expected, rel=1e-4)


def test_dropin_feeds_every_entry_to_the_dense_models_downstream_models(compressed, sst2_dir,
                                                                       tmp_path):
  from prunelm_tf.evaluation.ner import NerConfig  # pylint: disable=import-outside-toplevel
  for name in ("conll", "cola", "mrpc"):
    (tmp_path / name).mkdir()
  config = EvaluateConfig(target=compressed, measure_latency=False, sst2_dir=sst2_dir,
                          mrpc_dir=_tiny_mrpc(tmp_path / "mrpc"),
                          ner_dir=_tiny_conll(tmp_path / "conll"),
                          ner=NerConfig(epochs=2, hidden_units=4, batch_size=2),
                          ner_seeds=(0, 1), cola_dir=_tiny_cola(tmp_path / "cola"),
                          probe=ProbeConfig(epochs=3), quantization=("none", "dynamic"),
                          downstream_protocol=("dropin", "retrain"))
  out = str(tmp_path / "e")
  entries = {e["name"]: e for e in evaluate(config, out)}
  dense = entries["dense/none"]
  # The dense model read by its own downstream models: drop-in = retrained, exactly.
  assert dense["sst2_dropin_accuracy"] == dense["sst2_accuracy"]
  assert dense["cola_dropin_mcc"] == dense["cola_mcc"]
  assert dense["mrpc_dropin_accuracy"] == dense["mrpc_accuracy"]
  assert dense["mrpc_dropin_f1"] == dense["mrpc_f1"]
  assert dense["ner_dropin_test_f1"] == pytest.approx(dense["ner_test_f1"], abs=1e-12)
  assert set(dense["dropin"]["ner"]["seeds"]) == {"0", "1"}
  for e in entries.values():
    assert 0.0 <= e["sst2_dropin_accuracy"] <= 1.0 and -1 <= e["cola_dropin_mcc"] <= 1
    assert 0.0 <= e["ner_dropin_test_f1"] <= 1.0 and 0.0 <= e["mrpc_dropin_f1"] <= 1.0
  assert sorted(os.listdir(os.path.join(out, "dropin"))) == [
      "cola_probe.npz", "mrpc_probe.npz", "ner_tagger_seed0.npz", "ner_tagger_seed1.npz",
      "reference.json", "sst2_probe.npz"]
  # Drop-in only: the retrained figures are not measured; the reference is reused.
  only = dataclasses.replace(config, downstream_protocol=("dropin",))
  stamp = os.path.getmtime(os.path.join(out, "dropin", "sst2_probe.npz"))
  again = {e["name"]: e for e in evaluate(only, out)}
  assert again["threshold_50/none"]["sst2_accuracy"] is None
  assert again["threshold_50/none"]["sst2_dropin_accuracy"] == \
      entries["threshold_50/none"]["sst2_dropin_accuracy"]
  assert os.path.getmtime(os.path.join(out, "dropin", "sst2_probe.npz")) == stamp


def test_dropin_marks_a_variant_of_another_width_and_needs_the_dense_model(compressed, sst2_dir):
  from prunelm_tf.evaluation import evaluate as evaluate_lib  # pylint: disable=import-outside-toplevel
  variant = find_variants(compressed)[1]
  narrower = dataclasses.replace(variant, config=dataclasses.replace(variant.config,
                                                                     projection_dim=2))
  entry = {"errors": {}}
  evaluate_lib._dropin(entry, narrower, None, "", EvaluateConfig(target=compressed), "",
                       {"shape": [3, 16], "sst2": "unused"})
  assert "not_dropin" in entry["dropin"] and "[3, 4]" in entry["dropin"]["not_dropin"]
  with pytest.raises(ValueError, match="holds no dense model"):
    evaluate(EvaluateConfig(target=os.path.join(compressed, "variants", "threshold_50"),
                            sst2_dir=sst2_dir, downstream_protocol=("dropin",)), "/nonexistent")
  with pytest.raises(ValueError, match="--downstream_protocol takes one or both"):
    EvaluateConfig(target=compressed, downstream_protocol=("dropin", "dropin"))


# pipelines.evaluate end to end (a subprocess, as a user starts it).
def test_evaluate_a_compression_run(tiny_run_dir, tiny_text, tmp_path):
  run_dir = str(tmp_path / "c")
  compress(CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, sparsity_sweep=(0.5,),
                          tflite_quantization=("none",), num_parity_sentences=1), run_dir)
  result = subprocess.run(
      [sys.executable, "-m", "pipelines.evaluate", f"--target={run_dir}",
       f"--perplexity_corpus={tiny_text}", "--latency_runs=3", "--latency_threads=1",
       "--latency_tokens=4"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  saved = json.load(open(os.path.join(run_dir, "evaluation", "evaluation.json")))
  assert [e["name"] for e in saved["entries"]] == ["dense/none", "threshold_50/none"]
  assert all(e["perplexity"]["mean"] > 1 for e in saved["entries"])
  assert all(e["latency"]["tflite"]["1"]["p50_ms"] > 0 for e in saved["entries"])
  assert "threshold_50/none" in result.stdout
