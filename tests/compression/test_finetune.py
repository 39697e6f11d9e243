"""The ``finetune`` stage and the retraining loop it shares with ``retrain``: unit tests on a
MethodContext of the tiny model (no export, no evaluation)."""

import dataclasses

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig, RetrainConfig
from prunelm_tf.compression.methods.cluster.clustering import cluster_model
from prunelm_tf.compression.shared.finetune import first_averaged_step, frozen_layers
from prunelm_tf.compression.shared.layerwise import prune_magnitude
from prunelm_tf.compression.methods.finetune.method import (FinetuneMethod, FinetuneOptions,
                                                     shared_value_matrices)
from prunelm_tf.compression.methods.lowrank import LowRankMethod, LowRankOptions
from prunelm_tf.compression.shared.targets import prunable_weights
from tests.compression.method_context import method_context, tiny_source

METHOD = FinetuneMethod()


def _options(**retrain):
  settings = dict(num_steps=2, batch_size=2, objective="kd", learning_rate=1e-2)
  settings.update(retrain)
  return FinetuneOptions(retrain=RetrainConfig(**settings))


def _weights(model):
  return {n: v.numpy().copy() for n, v in prunable_weights(model).items()}


def _pruned_and_clustered(source):
  """The tiny model with 40 % zeros in every embedder matrix and 4 values in the LSTMs'."""
  clustered = {n: 4 for n in prunable_weights(source.model) if "_lstm_" in n}
  for name, variable in prunable_weights(source.model).items():
    if not name.startswith("softmax"):
      variable.assign(prune_magnitude(variable.numpy(), 0.4))
  cluster_model(source.model, clustered)
  return clustered


def test_finetuning_keeps_zeros_and_shared_values_and_trains_the_rest(tiny_run_dir, tiny_text,
                                                                      tmp_path):
  """Zeros stay zero, clustered matrices keep at most their values (which move), other
  weights train; the source model is not changed; the record says what was kept."""
  source = tiny_source(tiny_run_dir)
  clustered = _pruned_and_clustered(source)
  before = _weights(source.model)
  done = METHOD.compress(_options(num_steps=4, objective="lm"),
                         method_context(source, tmp_path, train=tiny_text))
  after = _weights(done.model)
  for name, value in after.items():
    np.testing.assert_array_equal(value[before[name] == 0], 0.0, err_msg=name)
    assert not np.allclose(value, before[name], atol=1e-6), f"{name} did not train"
    if name in clustered:
      assert len(np.unique(value[value != 0])) <= 4, name
  assert done.metrics["shared_values"] == {n: 4 for n in clustered}
  assert done.metrics["finetuning"]["num_train_steps"] == 4
  assert done.metrics["input_sparsity"] > 0.1 and done.seconds["finetune"] > 0
  for name, value in _weights(source.model).items():  # trained a copy
    np.testing.assert_array_equal(value, before[name])


def test_finetuning_a_factorized_model_keeps_its_shape(tiny_run_dir, tiny_text, tmp_path):
  source = tiny_source(tiny_run_dir)
  low = LowRankMethod().compress(LowRankOptions(), method_context(source, tmp_path / "l",
                                                                  target=0.3))
  factorized = dataclasses.replace(source, model=low.model, config=low.config)
  done = METHOD.compress(_options(), method_context(factorized, tmp_path / "f",
                                                    train=tiny_text, teacher=source.model))
  assert done.config == low.config and done.config.ranks
  trained = [w.shape for w in done.model.weights]
  assert trained == [w.shape for w in low.model.weights]
  assert any(not np.allclose(a, b) for a, b in zip(done.model.get_weights(),
                                                    low.model.get_weights()))
  assert "shared_values" not in done.metrics


def test_shared_value_matrices_are_the_clustered_ones():
  rng = np.random.default_rng(0)
  dense = rng.normal(size=(40, 30))
  four = rng.choice([-0.2, -0.1, 0.1, 0.3], size=(40, 30)) * (rng.random((40, 30)) > 0.5)
  small = np.array([[0.1, 0.2], [0.3, 0.1]])  # too few weights per value
  found = shared_value_matrices({"dense": dense, "four": four, "small": small}, 256)
  assert found == {"four": 4}
  assert shared_value_matrices({"four": four}, 3) == {}
  assert shared_value_matrices({"four": four}, 0) == {}


def test_finetuning_takes_no_amount_and_no_sampled_softmax(tiny_run_dir):
  base = dict(model_dir=tiny_run_dir, train="t", eval="e", method="finetune")
  config = CompressConfig(**base, sparsity_sweep=(0.0,))
  METHOD.check(config.method_options, config, tiny_source(tiny_run_dir))
  with pytest.raises(ValueError, match="removes nothing.*no amount"):
    bad = CompressConfig(**base, sparsity_sweep=(0.5,))
    METHOD.check(bad.method_options, bad, tiny_source(tiny_run_dir))
  with pytest.raises(ValueError, match="sampled softmax is not available when retraining a "
                     "compressed model"):
    FinetuneOptions(retrain=RetrainConfig(num_sampled=8))
  assert METHOD.variant_name(FinetuneOptions(), 0.0) == "finetune"
  assert METHOD.needs(_options(objective="distill")).softmax is False
  assert METHOD.needs(_options(objective="kd")).softmax and METHOD.needs(_options()).train


def test_retraining_dropout_is_applied_while_training_and_restored(monkeypatch, tiny_run_dir,
                                                                   tiny_text, tmp_path):
  """RetrainConfig.dropout sets every dropout layer's rate for the training only."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from prunelm_tf.compression.shared import finetune  # pylint: disable=import-outside-toplevel
  seen = []
  real = finetune._run  # pylint: disable=protected-access

  def spy(trainer, *args, **kwargs):
    layers = [l for l in trainer.model.layers if isinstance(l, tf.keras.layers.Dropout)]
    seen.append((layers, [l.rate for l in layers]))
    return real(trainer, *args, **kwargs)
  monkeypatch.setattr(finetune, "_run", spy)
  METHOD.compress(_options(num_steps=1, dropout=0.5),
                  method_context(tiny_source(tiny_run_dir), tmp_path, train=tiny_text))
  (layers, rates), = seen
  assert layers and rates == [0.5] * len(layers)
  assert [l.rate for l in layers] == [0.0] * len(layers)  # the tiny model's own rate
  with pytest.raises(ValueError, match=r"retraining dropout must be in \[0, 1\)"):
    RetrainConfig(dropout=1.0)


def test_retraining_warms_its_learning_rate_up(monkeypatch, tiny_run_dir, tiny_text, tmp_path):
  """--warmup_steps: the rate rises linearly over the first steps, then follows the schedule;
  recorded only when set; a warm-up as long as the training is refused."""
  from prunelm_tf.compression.shared import finetune  # pylint: disable=import-outside-toplevel
  seen = []
  real = finetune.LearningRate

  def spy(*args, **kwargs):
    schedule = real(*args, **kwargs)
    seen.append([float(schedule(step)) for step in range(6)])
    return schedule
  monkeypatch.setattr(finetune, "LearningRate", spy)
  options = _options(num_steps=6, lr_schedule="linear", warmup_steps=2)
  METHOD.compress(options, method_context(tiny_source(tiny_run_dir), tmp_path, train=tiny_text))
  (rates,) = seen
  assert rates == pytest.approx([5e-3, 1e-2, 1e-2, 7.5e-3, 5e-3, 2.5e-3])
  config = CompressConfig(model_dir="m", train="t", method="finetune", sparsity_sweep=(0.0,),
                          method_options=options)
  assert '"warmup_steps": 2' in config.to_json()
  # Unset, the record leaves it out (run folders made before the field still resume).
  assert "warmup_steps" not in dataclasses.replace(config, method_options=_options()).to_json()
  with pytest.raises(ValueError, match=r"--warmup_steps \(4\) must be fewer than --num_steps "
                                       r"\(4\)"):
    RetrainConfig(num_steps=4, warmup_steps=4)
  with pytest.raises(ValueError, match="--warmup_steps must be >= 0"):
    RetrainConfig(warmup_steps=-1)
  # A budget in epochs is checked once its steps are known, before any training.
  with pytest.raises(ValueError, match=r"--warmup_steps \(100000\) must be fewer than"):
    METHOD.compress(_options(num_epochs=0.5, warmup_steps=100_000),
                    method_context(tiny_source(tiny_run_dir), tmp_path / "w", train=tiny_text))


def test_retraining_uses_and_records_its_adam_epsilon(monkeypatch, tiny_run_dir, tiny_text,
                                                    tmp_path):
  """--adam_epsilon reaches the optimizer; recorded only when set; bad values refused."""
  from prunelm_tf.compression.shared import finetune  # pylint: disable=import-outside-toplevel
  seen = []
  real = finetune.keras.optimizers.Adam

  def spy(*args, **kwargs):
    optimizer = real(*args, **kwargs)
    seen.append(optimizer.epsilon)
    return optimizer
  monkeypatch.setattr(finetune.keras.optimizers, "Adam", spy)
  options = _options(adam_epsilon=1e-5)
  METHOD.compress(options, method_context(tiny_source(tiny_run_dir), tmp_path, train=tiny_text))
  assert seen == [1e-5]
  config = CompressConfig(model_dir="m", train="t", method="finetune", sparsity_sweep=(0.0,),
                          method_options=options)
  assert '"adam_epsilon": 1e-05' in config.to_json()
  assert "adam_epsilon" not in dataclasses.replace(config, method_options=_options()).to_json()
  assert RetrainConfig().adam_epsilon == 1e-7  # Keras's own default
  for bad in (0.0, -1e-5, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="--adam_epsilon must be a finite number > 0"):
      RetrainConfig(adam_epsilon=bad)


def test_momentum_sgd_leaves_a_model_at_its_teacher(monkeypatch, tiny_run_dir, tiny_text,
                                                    tmp_path):
  """--retrain_optimizer=sgd: the dense model distilled from itself (its KD gradient is zero
  but for rounding) keeps its weights at a large rate (Adam normalizes those gradients to
  steps of about its rate); the momentum reaches the optimizer; bad settings are refused."""
  from prunelm_tf.compression.shared import finetune  # pylint: disable=import-outside-toplevel
  seen = []
  real = finetune.keras.optimizers.SGD

  def spy(*args, **kwargs):
    optimizer = real(*args, **kwargs)
    seen.append(float(optimizer.momentum))
    return optimizer
  monkeypatch.setattr(finetune.keras.optimizers, "SGD", spy)
  source = tiny_source(tiny_run_dir)
  options = _options(num_steps=4, dropout=0.0, optimizer="sgd", learning_rate=1.0, momentum=0.5)
  done = METHOD.compress(options, method_context(source, tmp_path, train=tiny_text))
  for a, b in zip(done.model.get_weights(), source.model.get_weights()):
    np.testing.assert_allclose(a, b, atol=1e-4)
  assert seen == [0.5]
  config = CompressConfig(model_dir="m", train="t", method="finetune", sparsity_sweep=(0.0,),
                          method_options=options)
  assert '"optimizer": "sgd"' in config.to_json() and '"momentum": 0.5' in config.to_json()
  assert "optimizer" not in dataclasses.replace(config, method_options=_options()).to_json()
  with pytest.raises(ValueError, match="--retrain_optimizer must be one of"):
    RetrainConfig(optimizer="rmsprop")
  for bad in (-0.1, 1.0):
    with pytest.raises(ValueError, match=r"--retrain_momentum must be in \[0, 1\)"):
      RetrainConfig(optimizer="sgd", momentum=bad)
  with pytest.raises(ValueError, match="--retrain_momentum is an option of "
                                       "--retrain_optimizer=sgd"):
    RetrainConfig(momentum=0.5)
  with pytest.raises(ValueError, match="--adam_epsilon is an option of "
                                       "--retrain_optimizer=adam"):
    RetrainConfig(optimizer="sgd", adam_epsilon=1e-5)


def test_retraining_keeps_the_average_of_its_last_steps_and_records_it(tiny_run_dir, tiny_text,
                                                                       tmp_path):
  """--retrain_average_last: the variant records how many steps its weights average; the
  zeros stay exact; out of [0, 1) refused."""
  source = tiny_source(tiny_run_dir)
  _pruned_and_clustered(source)
  zeros = {n: w == 0 for n, w in _weights(source.model).items()}
  options = _options(num_steps=4, average_last=0.5)
  done = METHOD.compress(options, method_context(source, tmp_path, train=tiny_text))
  assert done.metrics["finetuning"]["averaged_steps"] == 2
  assert done.metrics["finetuning"]["num_train_steps"] == 4
  for name, value in _weights(done.model).items():
    np.testing.assert_array_equal(value[zeros[name]], 0.0)
  plain = _options(num_steps=4)
  config = CompressConfig(model_dir="m", train="t", method="finetune", sparsity_sweep=(0.0,),
                          method_options=options)
  assert '"average_last": 0.5' in config.to_json()
  assert "average_last" not in dataclasses.replace(config, method_options=plain).to_json()
  assert first_averaged_step(plain.retrain, 4) is None
  assert first_averaged_step(options.retrain, 4) == 3
  assert first_averaged_step(dataclasses.replace(options.retrain, average_last=0.01), 4) == 4
  for bad in (1.0, -0.1, float("nan")):
    with pytest.raises(ValueError, match=r"--retrain_average_last must be in \[0, 1\)"):
      RetrainConfig(average_last=bad)


def test_an_averaged_retraining_records_its_last_step_on_valid(tiny_run_dir, tiny_text,
                                                                tmp_path):
  """With --valid, an averaged retraining also records the valid perplexity of its last
  step's weights. Averaging the last step only keeps that step's weights (the figure is the
  model's own); averaging two steps moves them."""
  from prunelm_tf.compression.source import EVAL_BATCH_SIZE  # pylint: disable=import-outside-toplevel
  from prunelm_tf.training.loop import evaluate_perplexity  # pylint: disable=import-outside-toplevel

  def valid_perplexity(model, context):
    return evaluate_perplexity(model, context.dataset(context.valid_sentences, EVAL_BATCH_SIZE,
                                                      shuffle=False))

  def run(average_last, folder, valid=tiny_text):
    source = tiny_source(tiny_run_dir)
    context = method_context(source, tmp_path / folder, train=tiny_text, valid=valid)
    done = METHOD.compress(_options(num_steps=4, average_last=average_last), context)
    return done, context

  last_only, context = run(0.01, "last_only")
  record = last_only.metrics["finetuning"]
  assert record["averaged_steps"] == 1
  before = record["valid_perplexity_before_average"]
  for k in ("forward", "backward", "mean"):
    assert np.isfinite(before[k]) and before[k] > 1.0
  own = valid_perplexity(last_only.model, context)
  np.testing.assert_allclose(before["mean"], own["mean"], rtol=1e-5)
  two, context = run(0.5, "two")
  moved = two.metrics["finetuning"]["valid_perplexity_before_average"]["mean"]
  assert abs(moved / valid_perplexity(two.model, context)["mean"] - 1) > 1e-5
  np.testing.assert_allclose(moved, before["mean"], rtol=1e-5)  # the same last step
  no_valid, _ = run(0.5, "no_valid", valid=None)
  assert "valid_perplexity_before_average" not in no_valid.metrics["finetuning"]


def test_a_frozen_layer_keeps_its_weights_through_the_training(tiny_run_dir, tiny_text,
                                                               tmp_path):
  """--retrain_frozen=softmax: every other layer trains, the softmax stays bit-equal;
  recorded only when set; names that are no layer with weights, or every such layer, are
  refused."""
  def train(frozen, folder):
    source = tiny_source(tiny_run_dir)
    done = METHOD.compress(_options(num_steps=3, frozen=frozen),
                           method_context(source, tmp_path / folder, train=tiny_text))
    return source.model, done.model

  def moved(model, dense, layer):
    return [not np.array_equal(a, b) for a, b in zip(model.get_layer(layer).get_weights(),
                                                     dense.get_layer(layer).get_weights())]
  dense, frozen = train("softmax", "frozen")
  assert not any(moved(frozen, dense, "softmax"))
  assert all(moved(frozen, dense, "forward_lstm_0")) and any(moved(frozen, dense,
                                                                   "backward_lstm_1"))
  dense, trained = train("", "trained")
  assert any(moved(trained, dense, "softmax"))
  config = CompressConfig(model_dir="m", train="t", method="finetune", sparsity_sweep=(0.0,),
                          method_options=_options(frozen="softmax"))
  assert '"frozen": "softmax"' in config.to_json()
  assert "frozen" not in dataclasses.replace(config, method_options=_options()).to_json()
  assert RetrainConfig(frozen="softmax, forward_lstm_0").frozen_layers == (
      "softmax", "forward_lstm_0")
  for bad in ("softmax,softmax", "softmax, softmax", "softmax,", ","):
    with pytest.raises(ValueError, match="--retrain_frozen must be distinct comma-separated"):
      RetrainConfig(frozen=bad)
  names = [layer.name for layer in dense.layers if layer.trainable_weights]
  for bad, message in (("softmx", r"--retrain_frozen: softmx is not a layer with weights of "
                                  r"this model; its layers are .*softmax"),
                       (",".join(names), "names every layer with weights")):
    with pytest.raises(ValueError, match=message):
      frozen_layers(RetrainConfig(frozen=bad), dense)


def test_a_training_budget_given_in_epochs(tiny_run_dir, tiny_text, tmp_path):
  """--num_epochs: the steps are epochs x batches per epoch (rounded up), recorded in both."""
  options = _options(num_epochs=1.5, batch_size=8)
  done = METHOD.compress(options, method_context(tiny_source(tiny_run_dir), tmp_path,
                                                 train=tiny_text))
  budget = done.metrics["finetuning"]
  per_epoch = budget["steps_per_epoch"]
  assert per_epoch > 1 and budget["budget_given_in"] == "epochs"
  assert budget["num_train_steps"] == -(-3 * per_epoch // 2)  # ceil(1.5 x per_epoch)
  config = CompressConfig(model_dir="m", train="t", method="finetune", sparsity_sweep=(0.0,),
                          method_options=options)
  assert '"num_epochs": 1.5' in config.to_json()
  assert "num_epochs" not in dataclasses.replace(config, method_options=_options()).to_json()
  with pytest.raises(ValueError, match="--num_epochs must be a finite number >= 0"):
    RetrainConfig(num_epochs=-1.0)
