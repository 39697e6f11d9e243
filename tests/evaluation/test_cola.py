"""CoLA: reading GLUE's files, Matthews correlation, the probe on frozen features."""

import numpy as np
import pytest

from prunelm_tf.evaluation import cola
from prunelm_tf.evaluation.downstream import ProbeConfig, matthews_corrcoef
from tests.evaluation.test_downstream import FakeEmbedder, _synthetic_rows


def _write_cola(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for i, (text, label) in enumerate(rows):
      f.write(f"src{i % 3}\t{label}\t{'' if label else '*'}\t{text}\n")
  return str(path)


def test_read_cola_real_dev_file(shared_data):
  sentences, labels = cola.read_cola(shared_data / "cola" / "dev.tsv")
  assert len(sentences) == len(labels) == 1043
  assert sentences[0] == ["The", "sailors", "rode", "the", "breeze", "clear", "of", "the",
                          "rocks", "."]
  assert set(labels.tolist()) == {0, 1} and 0.6 < labels.mean() < 0.75


@pytest.mark.parametrize("line, match", [
    ("src\t1\tThe cat sat.", "expected 4 tab-separated fields"),
    ("src\t2\t\tThe cat sat.", "the label must be 0 or 1"),
    ("src\t1\t\t  ", "the sentence is empty"),
])
def test_read_cola_refuses_bad_rows_with_the_line(tmp_path, line, match):
  path = tmp_path / "train.tsv"
  path.write_text("src\t1\t\tA good row.\n" + line + "\n")
  with pytest.raises(ValueError, match=f"line 2: {match}"):
    cola.read_cola(path)


def test_read_cola_missing_or_empty_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="--cola_dir"):
    cola.read_cola(tmp_path / "train.tsv")
  (tmp_path / "dev.tsv").write_text("\n")
  with pytest.raises(ValueError, match="has no rows"):
    cola.read_cola(tmp_path / "dev.tsv")


def test_matthews_corrcoef():
  y = np.array([1, 1, 0, 0, 1, 0])
  assert matthews_corrcoef(y, y) == pytest.approx(1.0)
  assert matthews_corrcoef(y, 1 - y) == pytest.approx(-1.0)
  assert matthews_corrcoef(y, np.ones_like(y)) == 0.0  # one predicted class: undefined -> 0
  # tp 2, tn 2, fp 1, fn 1: (4 - 1) / sqrt(3 * 3 * 3 * 3) = 1/3
  assert matthews_corrcoef(y, np.array([1, 0, 1, 0, 1, 0])) == pytest.approx(1 / 3)


def test_evaluate_cola_learns_the_separable_task(tmp_path):
  train = _write_cola(tmp_path / "train.tsv", _synthetic_rows(40, 0))
  dev = _write_cola(tmp_path / "dev.tsv", _synthetic_rows(12, 1))
  probe = ProbeConfig(epochs=20, batch_size=8, learning_rate=0.05)
  result = cola.evaluate_cola(FakeEmbedder(), train, dev, cache_dir=str(tmp_path / "c"),
                              probe=probe, model_fingerprint="fake")
  assert result["matthews_corrcoef"] > 0.8 and result["accuracy"] > 0.9
  assert result["num_dev"] == 12 and result["majority_baseline"] == pytest.approx(0.5)
  again = cola.evaluate_cola(FakeEmbedder(), train, dev, cache_dir=str(tmp_path / "c"),
                             probe=probe, model_fingerprint="fake")
  assert again["matthews_corrcoef"] == result["matthews_corrcoef"]  # seeded, cached features
