"""The registered obs / wanda methods on a MethodContext of the tiny model: exact targets,
records; bad input refused by compress() before any work; retrain on a schedule (its dense
control and its budget); sensitivity allocation of threshold to high levels."""

import os

import pytest

from prunelm_tf.compression import CompressConfig
from tests.dense_reuse import compress
from prunelm_tf.compression.methods.retrain import RetrainOptions
from prunelm_tf.compression.methods.obs import ObsOptions
from prunelm_tf.compression import RetrainConfig, ScheduleConfig
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression.shared.allocation import calibration_loss_fn, sensitivity_curves
from prunelm_tf.compression.shared.targets import measure_sparsity
from prunelm_tf.compression.source import EVAL_BATCH_SIZE, Source, representation_similarity
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.training.loop import evaluate_perplexity
from prunelm_tf.training.run_folder import load_run
from tests.compression.method_context import method_context, tiny_source


def _dataset(source, text):
  """``text`` as compress() measures perplexity and similarity on --eval."""
  return source.dataset(load_corpus(text, what="--eval"), EVAL_BATCH_SIZE, shuffle=False)


def _perplexity(model, source, text):
  return evaluate_perplexity(model, _dataset(source, text))


def _retraining(model_dir, text, options, sparsity, **settings):
  """A retraining run of the tiny model on the tiny text at one target sparsity."""
  return CompressConfig(model_dir=model_dir, train=text, eval=text, method="retrain",
                        method_options=options, sparsity_sweep=(sparsity,),
                        tflite_quantization=(), num_parity_sentences=1, **settings)


@pytest.mark.parametrize("method", ["obs", "wanda"])
def test_layerwise_method_reaches_exact_targets_and_records_errors(method, tiny_run_dir,
                                                                   tiny_text, tmp_path):
  source = tiny_source(tiny_run_dir)
  options = REGISTRY[method].Options()
  done = REGISTRY[method].compress(options, method_context(
      source, tmp_path, target=0.5, calibration=tiny_text, max_sentences=50,
      layer_sparsity=(("softmax", 0.0),)))
  assert REGISTRY[method].variant_name(options, 0.5) == f"{method}_50"
  for name, value in measure_sparsity(done.model)["per_weight"].items():
    assert abs(value - (0.0 if name.startswith("softmax") else 0.5)) < 0.01, name
  lstm = done.metrics["layerwise"]["forward_lstm_0/kernel"]
  assert lstm["method"] == method and 0 <= lstm["calibration_error"] < 1
  assert _perplexity(done.model, source, tiny_text)["mean"] > 1


def test_obs_too_little_calibration_text_is_refused_before_any_work(tiny_run_dir, tiny_text,
                                                                    tmp_path):
  config = CompressConfig(model_dir=tiny_run_dir, eval=tiny_text, calibration=tiny_text,
                          calibration_sentences=1, method="obs", method_options=dict(
                              min_tokens_factor=100.0), tflite_quantization=())
  with pytest.raises(ValueError, match=r"--calibration: 1 sentences give \d+ tokens.*needs at "
                                       r"least \d+"):
    compress(config, str(tmp_path / "c"))
  assert not os.path.exists(tmp_path / "c")


def test_obs_sensitivity_allocation_is_obs_only():
  base = dict(model_dir="m", eval="e", calibration="c")
  with pytest.raises(ValueError) as e:
    CompressConfig(**base, method="wanda", method_options={"allocation": "obs_sensitivity"})
  message = str(e.value)
  assert "--allocation" in message and "'obs_sensitivity'" in message
  assert "not a choice of --method=wanda: it takes uniform, sensitivity" in message
  assert "obs_sensitivity needs --method=obs" in message
  # The boundary: obs takes it, and wanda takes the other allocations.
  config = CompressConfig(**base, method="obs", method_options={"allocation": "obs_sensitivity"})
  assert config.method_options.allocation == "obs_sensitivity"
  for allocation in ("uniform", "sensitivity"):
    config = CompressConfig(**base, method="wanda", method_options={"allocation": allocation})
    assert config.method_options.allocation == allocation


def test_sensitivity_max_level_is_validated():
  with pytest.raises(ValueError, match=r"--sensitivity_max_level must lie in \[0.95, 1\)"):
    ObsOptions(sensitivity_max_level=1.0)
  assert ObsOptions(allocation="obs_sensitivity", sensitivity_max_level=0.99
                    ).sensitivity_max_level == 0.99


def test_obs_sensitivity_allocation_measures_obs_costs(tiny_run_dir, tiny_text, tmp_path):
  """allocation=obs_sensitivity: curves from OBS-pruning each matrix alone, exact overall budget."""
  import json  # pylint: disable=import-outside-toplevel
  source = tiny_source(tiny_run_dir)
  options = ObsOptions(allocation="obs_sensitivity", sensitivity_sentences=3)
  method = REGISTRY["obs"]
  done = method.compress(options, method_context(
      source, tmp_path, target=0.6, calibration=tiny_text, max_sentences=50,
      layer_sparsity=(("softmax", 0.0),)))
  v = done.metrics
  assert method.variant_name(options, 0.6) == "obs_osens_60"
  assert v["allocation"] == "obs_sensitivity"
  per_weight = {n: s for n, s in measure_sparsity(done.model)["per_weight"].items()
                if not n.startswith("softmax")}
  assert max(per_weight.values()) - min(per_weight.values()) > 0.05
  sizes = v["allocated_targets"]
  free = {n: s for n, s in per_weight.items() if n in sizes}
  assert abs(sum(free.values()) / len(free) - 0.6) < 0.3  # allocated, not uniform
  cached = json.loads((tmp_path / "cache" / "sensitivity_obs_all.json").read_text())
  assert cached["num_sentences"] == 3  # --sensitivity_sentences; the pruning read all 5
  tokens_of_3 = sum(len(x) + 2 for x in load_corpus(tiny_text, 3, what="--calibration"))
  assert v["layerwise"]["forward_lstm_0/kernel"]["num_tokens"] > tokens_of_3
  obs_curves = cached["curves"]
  # The magnitude curves of the same matrices at 80 %, measured the same way on the
  # same calibration text: OBS costs less in most matrices.
  model, model_config, vocab = load_run(tiny_run_dir)
  source = Source(model, model_config, vocab, "tiny")
  mag_curves = sensitivity_curves(
      model, sorted(obs_curves),
      calibration_loss_fn(source, load_corpus(tiny_text, 3, what="--calibration")),
      levels=(0.8,))["curves"]
  assert set(obs_curves) == set(mag_curves) == set(sizes)
  cheaper = sum(obs_curves[n]["0.8"] <= mag_curves[n]["0.8"] + 1e-6 for n in obs_curves)
  assert cheaper >= 0.75 * len(obs_curves), (obs_curves, mag_curves)


def test_retraining_at_sparsity_zero_is_the_dense_control(tiny_run_dir, tiny_text, tmp_path):
  """Sweep 0 with --init=dense: the dense model trained for the budget, nothing pruned."""
  options = RetrainOptions(schedule=ScheduleConfig(frequency=1, end_step=2),
                           retrain=RetrainConfig(num_steps=3, batch_size=2, objective="kd",
                                                 learning_rate=1e-2))
  source = tiny_source(tiny_run_dir)
  method = REGISTRY["retrain"]
  done = method.compress(options, method_context(source, tmp_path, target=0.0, train=tiny_text))
  assert method.variant_name(options, 0.0) == "retrain_00"
  assert measure_sparsity(done.model)["overall"] == 0.0
  assert done.metrics["retraining"]["num_train_steps"] == 3
  # It trained: the representations moved away from the dense model's.
  similarity = representation_similarity(done.model, source.model,
                                         _dataset(source, tiny_text))
  assert similarity and min(similarity.values()) < 1.0 - 1e-6
  assert (_perplexity(done.model, source, tiny_text)["mean"]
          != _perplexity(source.model, source, tiny_text)["mean"])


def test_an_epoch_budget_too_short_for_the_schedule_is_refused(tiny_run_dir, tiny_text, tmp_path):
  with pytest.raises(ValueError, match="--num_epochs must be a finite number >= 0"):
    RetrainConfig(num_epochs=-1.0)
  options = RetrainOptions(schedule=ScheduleConfig(frequency=1, end_step=10_000),
                           retrain=RetrainConfig(num_epochs=0.5, batch_size=2, objective="kd"))
  config = _retraining(tiny_run_dir, tiny_text, options, 0.5)
  with pytest.raises(ValueError, match=r"--num_epochs=0.5 gives \d+ steps, fewer than "
                                       r"--end_step \(10000\)"):
    compress(config, str(tmp_path / "r"))


def test_magnitude_sensitivity_curves_reach_higher_levels(tiny_run_dir, tiny_text, tmp_path):
  """threshold --sensitivity_max_level: a 0.95 target is spread unevenly, with levels above
  0.95; the level is refused where it does nothing."""
  from prunelm_tf.compression.methods.threshold import ThresholdOptions  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="--sensitivity_max_level applies to "
                                       "--method=threshold with --allocation=sensitivity"):
    ThresholdOptions(sensitivity_max_level=0.99)
  with pytest.raises(ValueError, match=r"--sensitivity_max_level must lie in \[0.95, 1\)"):
    ThresholdOptions(allocation="sensitivity", sensitivity_max_level=0.94)
  done = REGISTRY["threshold"].compress(
      ThresholdOptions(allocation="sensitivity", sensitivity_max_level=0.99),
      method_context(tiny_source(tiny_run_dir), tmp_path, target=0.95, calibration=tiny_text,
                     max_sentences=20))
  allocated = done.metrics["allocated_targets"]
  assert max(allocated.values()) > 0.95 and min(allocated.values()) < 0.95
  assert abs(measure_sparsity(done.model)["overall"] - 0.95) < 0.01
