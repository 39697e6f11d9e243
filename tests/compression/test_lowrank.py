"""``lowrank``: factorization math, rank allocation, factorized models, and the whole product."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig
from tests.dense_reuse import compress
from prunelm_tf.compression.shared.calibration import collect_grams
from prunelm_tf.compression.methods.lowrank.factorization import (allocate_ranks, errors,
                                                                  max_saving_rank,
                                                                  min_kept_fraction, spectrum)
from prunelm_tf.compression.methods.lowrank import LowRankOptions
from prunelm_tf.compression.options import option_flags
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression.source import model_dataset
from prunelm_tf.data import open_corpus, read_sentences
from prunelm_tf.elmo import ElmoEmbedder, load_elmo
from prunelm_tf.models import BiLMConfig, build_bilm
from prunelm_tf.models.config import factorizable_matrices, num_parameters
from prunelm_tf.models.surgery import matrix_values, multiply_back, rebuild
from prunelm_tf.training.run_folder import load_run
from tests.compression.method_context import method_context

TINY_CHAR = BiLMConfig(vocab_size=12, token_encoder="char", lstm_dim=8, projection_dim=6,
                       n_layers=2, dropout=0.0,
                       char_cnn=dict(embedding_dim=3, filters=((1, 4), (2, 6)), n_highway=1,
                                     max_characters_per_token=7))


def _char_ids(seed=0):
  ids = np.random.default_rng(seed).integers(1, 60, size=(2, 5, 7)).astype(np.int32)
  ids[1, 3:] = 0  # a shorter second sentence
  return ids


# --- one matrix ---------------------------------------------------------------

def test_full_rank_factors_reproduce_the_matrix_plain_and_data_aware():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(6, 9))
  x = rng.normal(size=(50, 6))
  for gram in (None, x.T @ x / 50):
    a, b = spectrum(w, gram, damp=0.0).factors(6)
    np.testing.assert_allclose(a.astype(np.float64) @ b, w, atol=1e-5)
  with pytest.raises(ValueError, match=r"rank must be in \[1, 6\]"):
    spectrum(w).factors(7)


def test_data_aware_beats_plain_svd_on_the_calibration_inputs_of_a_real_model(tiny_run_dir,
                                                                               tiny_text):
  model, config, vocab = load_run(tiny_run_dir)
  sentences = read_sentences(open_corpus(tiny_text))
  names = ["forward_lstm_0/kernel", "backward_lstm_1/projection", "softmax/kernel"]
  grams = collect_grams(model, names, model_dataset(config, vocab, sentences, 8, shuffle=False))
  for name in ("forward_lstm_0/input_kernel", "backward_lstm_1/projection", "softmax/kernel"):
    w = matrix_values(model, name)
    h = grams[name.replace("input_kernel", "kernel")].gram()[:w.shape[0], :w.shape[0]]
    rank = 2
    plain = errors(w, *spectrum(w).factors(rank), h)
    data = errors(w, *spectrum(w, h, damp=1e-6).factors(rank), h)
    assert data["calibration_error"] < plain["calibration_error"], name
    assert data["weight_error"] >= plain["weight_error"] - 1e-9, name  # SVD is optimal there


# --- allocation -----------------------------------------------------------------

def test_energy_allocation_respects_the_budget_and_follows_the_spectrum():
  shapes = {"a": (16, 64), "b": (16, 64), "c": (32, 16)}
  energies = {"a": np.array([0.5, 0.25, 0.25] + [0.0] * 13),  # rank 3
              "b": np.full(16, 1 / 16),  # flat spectrum
              "c": np.full(16, 1 / 16)}
  total = sum(m * n for m, n in shapes.values())
  for removed in (0.3, 0.5, 0.8, 0.9):
    ranks = allocate_ranks(energies, shapes, removed)
    kept = sum(shapes[n][0] * shapes[n][1] if r is None else r * sum(shapes[n])
               for n, r in ranks.items())
    assert kept <= (1 - removed) * total + 1e-6, (removed, ranks)
    assert all(r is None or 1 <= r <= max_saving_rank(shapes[n]) for n, r in ranks.items())
  ranks = allocate_ranks(energies, shapes, 0.5)
  # a's values are worth most per parameter, then c's (smaller), then b's; none on zero energy.
  assert ranks == {"a": 3, "b": 7, "c": 10}
  # A budget so loose that factors at their largest saving rank cost about as much: dense.
  assert allocate_ranks(energies, shapes, 0.01)["b"] is None
  uniform = allocate_ranks(energies, shapes, 0.5, "uniform")
  assert uniform == {"a": 6, "b": 6, "c": 5}  # floor(0.5 m n / (m + n)) each
  with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
    allocate_ranks(energies, shapes, 0.0)
  with pytest.raises(ValueError, match="less than rank 1"):
    allocate_ranks(energies, shapes, 1 - min_kept_fraction(shapes) + 0.01)
  with pytest.raises(ValueError, match="no factorization holds fewer parameters"):
    allocate_ranks({"v": np.ones(1)}, {"v": (1, 50)}, 0.5)


# --- the factorized model -----------------------------------------------------------

def test_ranks_config_validates_round_trips_and_counts_parameters():
  config = dataclasses.replace(TINY_CHAR, ranks=(("softmax/kernel", 2),
                                                 ("forward_lstm_1/recurrent_kernel", 3),
                                                 ("highway_0/carry_kernel", 4)))
  # Kept in model order, whatever order they were given in.
  assert [n for n, _ in config.ranks] == ["highway_0/carry_kernel",
                                          "forward_lstm_1/recurrent_kernel", "softmax/kernel"]
  restored = BiLMConfig.from_dict(json.loads(json.dumps(config.to_dict())), source="c.json")
  assert restored == config and restored.rank_of("softmax/kernel") == 2
  assert build_bilm(config).count_params() == num_parameters(config) < num_parameters(TINY_CHAR)
  with pytest.raises(ValueError, match=r"full rank 6, so its rank must be in \[1, 5\]; got 6"):
    dataclasses.replace(TINY_CHAR, ranks=(("softmax/kernel", 6),))
  with pytest.raises(ValueError, match=r"got 0"):
    dataclasses.replace(TINY_CHAR, ranks=(("softmax/kernel", 0),))
  with pytest.raises(ValueError, match="c.json: .*'forward_lstm_2/projection'.* not a factoriz"):
    BiLMConfig.from_dict({**TINY_CHAR.to_dict(), "ranks": [["forward_lstm_2/projection", 2]]},
                         source="c.json")
  with pytest.raises(ValueError, match="more than once"):
    dataclasses.replace(TINY_CHAR, ranks=(("softmax/kernel", 2), ("softmax/kernel", 3)))
  with pytest.raises(TypeError, match="integer rank"):
    dataclasses.replace(TINY_CHAR, ranks=(("softmax/kernel", 2.5),))


def test_factors_of_the_matrices_true_rank_reproduce_the_dense_model():
  """Every factorizable matrix made exactly rank r: factors of rank r give the same outputs."""
  dense = build_bilm(TINY_CHAR)
  rng = np.random.default_rng(1)
  shapes = factorizable_matrices(TINY_CHAR)
  true_rank = {n: max_saving_rank(s) for n, s in shapes.items()}
  from prunelm_tf.models.surgery import assign_matrix  # pylint: disable=import-outside-toplevel
  for name, (m, n) in shapes.items():
    r = true_rank[name]
    assign_matrix(dense, name, (rng.normal(size=(m, r)) @ rng.normal(size=(r, n)) / m)
                  .astype(np.float32))
  config = dataclasses.replace(TINY_CHAR, ranks=tuple(true_rank.items()))
  factors = {n: spectrum(matrix_values(dense, n)).factors(r) for n, r in true_rank.items()}
  factorized = rebuild(dense, TINY_CHAR, config, factors)
  assert factorized.count_params() < dense.count_params()
  ids = _char_ids()
  want, got = dense(ids), factorized(ids)
  for key in ("representations", "forward_logits", "backward_logits"):
    np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=2e-5)
  # Multiplying back gives the dense layout again, with the same outputs.
  back, back_config = multiply_back(factorized, config)
  assert back_config == TINY_CHAR
  assert [w.name for w in back.weights] == [w.name for w in dense.weights]
  np.testing.assert_allclose(back(ids)["representations"].numpy(),
                             want["representations"].numpy(), atol=2e-5)


# --- the method ----------------------------------------------------------------------

def test_lowrank_flags_come_from_its_options():
  flags = {f.name: f for f in option_flags(list(REGISTRY.values()))}
  assert flags["lowrank_criterion"].choices == ("svd", "data")
  # --allocation is one flag of several methods; lowrank takes its own values and default.
  assert flags["allocation"].choices_of("lowrank") == ("energy", "uniform")
  assert flags["allocation"].default is None  # each method keeps its own default
  # Fine-tuning is a stage of its own: its settings are finetune's (shared with retrain).
  assert {m for m, _ in flags["num_steps"].targets} == {"retrain", "finetune"}


def test_bad_input_is_refused_before_any_work(tiny_run_dir, tiny_text, tmp_path):
  def config(**kw):
    return CompressConfig(**{**dict(model_dir=tiny_run_dir, eval=tiny_text, method="lowrank",
                                     tflite_quantization=()), **kw})
  with pytest.raises(ValueError, match="measures on --calibration"):
    config(method_options=LowRankOptions(criterion="data"))
  with pytest.raises(ValueError, match="--lowrank_criterion must be one of"):
    LowRankOptions(criterion="tt")
  with pytest.raises(ValueError, match=r"must be in \(0, 1\); got 0.0"):
    compress(config(sparsity_sweep=(0.0, 0.5)), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="removes more than rank-1 factors allow"):
    compress(config(sparsity_sweep=(0.97,)), str(tmp_path / "b"))
  with pytest.raises(ValueError, match="no matrix .* is left to factorize"):
    compress(config(layer_sparsity=((".*", 0.0),)), str(tmp_path / "c"))
  assert not any((tmp_path / d).exists() for d in "abc")  # refused before any work


def _tflite_matmuls(path):
  """FULLY_CONNECTED and BATCH_MATMUL ops over every subgraph of a TFLite file."""
  import contextlib  # pylint: disable=import-outside-toplevel
  import io  # pylint: disable=import-outside-toplevel
  import re  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  text = io.StringIO()
  with contextlib.redirect_stdout(text):
    tf.lite.experimental.Analyzer.analyze(model_path=path)
  return len(re.findall(r"\b(?:FULLY_CONNECTED|BATCH_MATMUL)\b", text.getvalue()))


def test_factorized_elmo_exports_hdf5_with_factors_multiplied_back(shared_data, tmp_path):
  """The ELMo fixture (char CNN, 2 highway layers, token projection), data-aware factors."""
  from prunelm_tf.compression.methods.lowrank import LowRankMethod  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.source import Source  # pylint: disable=import-outside-toplevel
  from prunelm_tf.elmo import export_elmo  # pylint: disable=import-outside-toplevel
  d = shared_data / "elmo_fixture"
  sentences = read_sentences(open_corpus(str(d / "sentences.txt")))
  model, config = load_elmo(str(d / "options.json"), str(d / "lm_weights.hdf5"))
  source = Source(model, config, None, "ELMo fixture")
  done = LowRankMethod().compress(LowRankOptions(criterion="data", allocation="uniform"),
                                  method_context(source, tmp_path, target=0.5,
                                                 calibration=str(d / "sentences.txt")))
  assert set(done.metrics["ranks"]) == set(factorizable_matrices(config))  # highway included
  multiplied = export_elmo(done.model, done.config, str(tmp_path / "options.json"),
                           str(tmp_path / "weights.hdf5"))
  assert multiplied == [n for n, _ in done.config.ranks]
  back, back_config = load_elmo(str(tmp_path / "options.json"), str(tmp_path / "weights.hdf5"))
  assert back_config == config  # the dense ELMo layout and sizes
  from_hdf5 = ElmoEmbedder(back, back_config).embed_sentences(sentences[:3])
  from_factors = ElmoEmbedder(done.model, done.config).embed_sentences(sentences[:3])
  for a, b in zip(from_hdf5, from_factors):
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.fixture(scope="module")
def lowrank_run(tiny_run_dir, tiny_text, tmp_path_factory):
  """A finished lowrank run (svd, 40 %, the softmax kept) with its float TFLite; read only."""
  low_run = str(tmp_path_factory.mktemp("lowrank") / "lr")
  compress(CompressConfig(
      model_dir=tiny_run_dir, eval=tiny_text, method="lowrank",
      method_options=LowRankOptions(criterion="svd"), sparsity_sweep=(0.4,),
      layer_sparsity=(("softmax", 0.0),), tflite_quantization=("none",),
      num_parity_sentences=1), low_run)
  return low_run


def test_a_compressed_variant_is_compressed_further(lowrank_run, tiny_text, tmp_path):
  """--model_dir=RUN/variants/NAME: low-rank factors, then thresholding of the factors."""
  vdir = os.path.join(lowrank_run, "variants", "lowrank_svd_40")
  with open(os.path.join(vdir, "metrics.json"), encoding="utf-8") as f:
    low = json.load(f)
  result = compress(CompressConfig(
      model_dir=vdir, eval=tiny_text, method="threshold", sparsity_sweep=(0.5,),
      layer_sparsity=(("softmax", 0.0),), tflite_quantization=("none",),
      num_parity_sentences=1), str(tmp_path / "chain"))
  # The chain's reference is the low-rank variant, exactly as it was measured.
  assert result["dense"]["perplexity"]["forward"] == pytest.approx(
      low["perplexity"]["forward"], rel=1e-5)
  both = result["variants"][0]
  factors = {n: s for n, s in both["sparsity"]["per_weight"].items() if "_a" in n or "_b" in n}
  assert factors and all(abs(s - 0.5) < 0.02 for s in factors.values()), factors
  assert both["tflite_max_abs_diff"]["none"] <= 1e-4
  with open(os.path.join(str(tmp_path / "chain"), "variants", both["name"], "config.json"),
            encoding="utf-8") as f:
    assert dict(json.load(f)["model"]["ranks"]) == low["ranks"]  # still factorized
  # The same run with its variant unfinished (a copy: the run is shared).
  shutil.copytree(lowrank_run, tmp_path / "lr")
  vdir = os.path.join(str(tmp_path / "lr"), "variants", "lowrank_svd_40")
  os.remove(os.path.join(vdir, "metrics.json"))
  with pytest.raises(FileNotFoundError, match="unfinished variant"):
    compress(CompressConfig(model_dir=vdir, eval=tiny_text, method="threshold",
                            sparsity_sweep=(0.5,), tflite_quantization=("none",)),
             str(tmp_path / "chain2"))


def test_a_variant_fine_tuned_further_learns_from_the_teacher_dir(tiny_run_dir, tiny_text,
                                                                  lowrank_run, tmp_path,
                                                                  monkeypatch):
  """--teacher_dir: a low-rank variant fine-tuned (kd) is taught by the dense model; obs on
  its factors is refused before any work."""
  from prunelm_tf.compression.methods.finetune import method as finetune_method  # pylint: disable=import-outside-toplevel
  from prunelm_tf.training.run_folder import load_run  # pylint: disable=import-outside-toplevel
  vdir = os.path.join(lowrank_run, "variants", "lowrank_svd_40")
  teachers = []
  original = finetune_method.retrain

  def spy(model, teacher, *args, **kwargs):
    teachers.append(teacher)
    return original(model, teacher, *args, **kwargs)

  monkeypatch.setattr(finetune_method, "retrain", spy)
  obs = CompressConfig(model_dir=vdir, eval=tiny_text, calibration=tiny_text,
                       calibration_sentences=50, method="obs", sparsity_sweep=(0.5,),
                       layer_sparsity=(("softmax", 0.0),), tflite_quantization=())
  with pytest.raises(ValueError, match="--method=obs reconstructs the full matrices.*low-rank "
                                       "factors"):  # refused before any work
    compress(obs, str(tmp_path / "obs"))
  assert not os.path.exists(tmp_path / "obs")
  config = CompressConfig(model_dir=vdir, teacher_dir=tiny_run_dir, train=tiny_text,
                          eval=tiny_text, method="finetune", sparsity_sweep=(0.0,),
                          method_options={"retrain": {"num_steps": 1, "batch_size": 2,
                                                      "objective": "kd"}},
                          tflite_quantization=(), num_parity_sentences=1)
  result = compress(config, str(tmp_path / "chain"))
  dense, _, _ = load_run(tiny_run_dir)
  (teacher,) = teachers
  assert sorted(w.name for w in teacher.weights) == sorted(w.name for w in dense.weights)
  for got, want in zip(teacher.get_weights(), dense.get_weights()):
    np.testing.assert_array_equal(got, want)
  assert result["variants"][0]["name"] == "finetune"
  assert result["variants"][0]["num_parameters"] == result["dense"]["num_parameters"]


def test_a_teacher_dir_is_refused_where_it_cannot_teach(tiny_run_dir, tiny_text, tmp_path):
  with pytest.raises(ValueError, match="--teacher_dir applies to a method that retrains"):
    CompressConfig(model_dir=tiny_run_dir, teacher_dir=tiny_run_dir, eval=tiny_text,
                   method="threshold")
  from prunelm_tf.compression import RetrainConfig, ScheduleConfig  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.methods.retrain import RetrainOptions  # pylint: disable=import-outside-toplevel
  options = RetrainOptions(schedule=ScheduleConfig(frequency=1, end_step=1),
                           retrain=RetrainConfig(num_steps=1, batch_size=2, objective="kd"))
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    compress(CompressConfig(model_dir=tiny_run_dir, teacher_dir=missing, train=tiny_text,
                            eval=tiny_text, method="retrain", method_options=options,
                            sparsity_sweep=(0.5,), tflite_quantization=()),
             str(tmp_path / "r"))
  assert not os.path.exists(tmp_path / "r")
