"""run_training: its resume edge (a run resumed with no step left still ends its callbacks),
the loss terms, and the weight average of the last steps."""

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.models import BiLMConfig
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.training.loop import (LossSpec, Trainer, WeightAverage, evaluate_perplexity,
                                      run_training)

SENTENCES = [["the", "cat"], ["a", "dog", "runs"]]


class Recorder(tf.keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.calls = []

  def on_train_begin(self, logs=None):
    self.calls.append("begin")

  def on_epoch_end(self, epoch, logs=None):
    self.calls.append(f"epoch_end {epoch}")


def _run(run_dir, callback):
  tf.keras.utils.set_random_seed(0)
  vocab = data_lib.Vocabulary.build(SENTENCES)
  model = build_bilm(BiLMConfig(vocab_size=len(vocab), token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1, dropout=0.0))
  trainer = Trainer(model, tf.keras.optimizers.Adam(0.01), LossSpec())
  dataset = lambda epoch: data_lib.make_dataset(SENTENCES, vocab, batch_size=2,
                                                char_inputs=False, shuffle=False)
  return run_training(trainer, dataset, run_dir=run_dir, steps_per_epoch=1, total_steps=1,
                      log_every_steps=1, checkpoint_every_steps=1, callbacks=[callback])


def test_callbacks_end_once_more_after_the_loop_even_with_no_step_left(tmp_path):
  first = Recorder()
  assert _run(str(tmp_path), first)["resumed_from_step"] == 0
  assert first.calls == ["begin", "epoch_end 0", "epoch_end 0"]
  # Killed after the checkpoint of the last step, before its epoch end: the
  # next start has no step left, and tfmot's masks must still be applied.
  resumed = Recorder()
  result = _run(str(tmp_path), resumed)
  assert result["resumed_from_step"] == 1 and result["tokens_per_second"] is None
  assert resumed.calls == ["begin", "epoch_end 0"]


def _teacher_student_batch():
  """Two tiny word biLMs of one architecture (different weights) and a padded batch."""
  tf.keras.utils.set_random_seed(0)
  vocab = data_lib.Vocabulary.build(SENTENCES)
  arch = BiLMConfig(vocab_size=len(vocab), token_encoder="word", lstm_dim=8, projection_dim=4,
                    n_layers=1, dropout=0.0)
  teacher, student = build_bilm(arch), build_bilm(arch)
  batch = next(iter(data_lib.make_dataset(SENTENCES, vocab, batch_size=2, char_inputs=False,
                                          shuffle=False)))
  return teacher, student, batch


def test_kd_and_distill_terms_add_up_in_one_step():
  """kd+distill: both terms are computed against the teacher and summed into the loss."""
  from prunelm_tf.compression.shared.finetune import RetrainConfig  # pylint: disable=import-outside-toplevel
  config = RetrainConfig(objective="kd+distill")
  assert config.uses_kd and config.uses_distill and not config.uses_lm and config.needs_softmax
  teacher, student, batch = _teacher_student_batch()
  terms = {}
  for name, spec in (("kd", LossSpec(lm_weight=0.0, kd_weight=1.0, teacher=teacher)),
                     ("distill", LossSpec(lm_weight=0.0, distill_weight=1.0, teacher=teacher)),
                     ("both", LossSpec(lm_weight=0.0, kd_weight=1.0, distill_weight=1.0,
                                       teacher=teacher))):
    trainer = Trainer(student, tf.keras.optimizers.SGD(0.0), spec)
    terms[name] = {k: float(v) for k, v in trainer.step(batch).items()}
  assert terms["kd"]["kd_kl"] > 0 and terms["distill"]["distill_mse"] > 0
  assert terms["both"]["loss"] == pytest.approx(
      terms["kd"]["loss"] + terms["distill"]["loss"], rel=1e-5)


def _layer_terms(student, teacher, batch):
  """Per layer [layers]: the squared error over the teacher's squared norm and the mean
  1 - cosine, over real words only (numpy, the definitions of LossSpec)."""
  a = student(batch["token_ids"])["representations"].numpy()
  b = teacher(batch["token_ids"])["representations"].numpy()
  words = (batch["token_ids"].numpy()[:, 2:] > 0)[:, None, :]
  assert not words.all()  # the short sentence is padded: padding must not count
  nmse = ((((a - b) ** 2).sum(-1) * words).sum((0, 2)) / ((b ** 2).sum(-1) * words).sum((0, 2)))
  cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1),
                                     1e-12)  # padding: zero vectors
  return nmse, ((1 - cos) * words).sum((0, 2)) / words.sum()


@pytest.mark.parametrize("kind", ["layer_nmse", "cosine"])
def test_per_layer_distillation_terms_are_their_definitions_over_real_words(kind):
  teacher, student, batch = _teacher_student_batch()
  nmse, cosine = _layer_terms(student, teacher, batch)
  expected = {"layer_nmse": nmse, "cosine": cosine}[kind]
  assert len(expected) == 2 and expected.min() > 0  # token layer and one LSTM layer
  for weights, value in (((), expected.mean()), ((1.0, 0.0), expected[0]),
                         ((1.0, 3.0), (expected[0] + 3 * expected[1]) / 4)):
    spec = LossSpec(lm_weight=0.0, distill_weight=2.0, distill_loss=kind,
                    distill_layer_weights=weights, teacher=teacher)
    terms = Trainer(student, tf.keras.optimizers.SGD(0.0), spec).step(batch)
    assert float(terms[f"distill_{kind}"]) == pytest.approx(value, rel=1e-4)
    assert float(terms["loss"]) == pytest.approx(2.0 * value, rel=1e-4)
  # The teacher against itself: nothing to learn.
  same = Trainer(teacher, tf.keras.optimizers.SGD(0.0),
                 LossSpec(lm_weight=0.0, distill_weight=1.0, distill_loss=kind, teacher=teacher))
  assert float(same.step(batch)[f"distill_{kind}"]) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["mse", "layer_nmse", "cosine"])
def test_distillation_steps_bring_every_kind_of_term_down(kind):
  teacher, student, batch = _teacher_student_batch()
  trainer = Trainer(student, tf.keras.optimizers.Adam(0.01),
                    LossSpec(lm_weight=0.0, distill_weight=1.0, distill_loss=kind,
                             teacher=teacher))
  values = [float(trainer.step(batch)[f"distill_{kind}"]) for _ in range(30)]
  assert values[-1] < 0.5 * values[0]


def test_bad_distillation_settings_are_refused():
  from prunelm_tf.compression.shared.finetune import RetrainConfig  # pylint: disable=import-outside-toplevel
  teacher, student, _ = _teacher_student_batch()
  with pytest.raises(ValueError, match="has 3 weights; the model has 2 layers"):
    Trainer(student, tf.keras.optimizers.SGD(0.0),
            LossSpec(lm_weight=0.0, distill_weight=1.0, distill_loss="cosine",
                     distill_layer_weights=(1.0, 1.0, 1.0), teacher=teacher))
  with pytest.raises(ValueError, match="distill_loss must be one of"):
    Trainer(student, tf.keras.optimizers.SGD(0.0),
            LossSpec(lm_weight=0.0, distill_weight=1.0, distill_loss="l1", teacher=teacher))
  assert RetrainConfig(distill_layer_weights="1, 0,2").layer_weights == (1.0, 0.0, 2.0)
  for bad in ("1,x", "0,0", "-1,2", "nan,1"):
    with pytest.raises(ValueError, match="--distill_layer_weights"):
      RetrainConfig(distill_layer_weights=bad)
  with pytest.raises(ValueError, match="--distill_loss must be one of"):
    RetrainConfig(distill_loss="l1")
  with pytest.raises(ValueError, match="sampled softmax is not available"):
    RetrainConfig(num_sampled=64)


class WeightsAfterEachStep(tf.keras.callbacks.Callback):
  """The model's weights at every epoch end (one step per epoch here)."""

  def __init__(self):
    super().__init__()
    self.weights = []

  def on_epoch_end(self, epoch, logs=None):
    self.weights.append([w.numpy().copy() for w in self.model.trainable_weights])


def _averaged_run(run_dir, callback, total_steps, first_step, masks=None, eval_of=None,
                  eval_every_epoch=True):
  tf.keras.utils.set_random_seed(0)
  vocab = data_lib.Vocabulary.build(SENTENCES)
  model = build_bilm(BiLMConfig(vocab_size=len(vocab), token_encoder="word", lstm_dim=8,
                                projection_dim=4, n_layers=1, dropout=0.0))
  trainer = Trainer(model, tf.keras.optimizers.Adam(0.05), LossSpec())
  masks = masks(model) if masks else None
  average = WeightAverage(model.trainable_variables, first_step, masks=masks)
  dataset = lambda epoch: data_lib.make_dataset(SENTENCES, vocab, batch_size=2,
                                                char_inputs=False, shuffle=False)
  result = run_training(trainer, dataset, run_dir=run_dir, steps_per_epoch=1,
                        total_steps=total_steps, log_every_steps=1, checkpoint_every_steps=1,
                        callbacks=[callback], average=average,
                        eval_fn=(lambda: eval_of(model)) if eval_of else None,
                        eval_every_epoch=eval_every_epoch)
  return model, result


def test_the_weights_are_the_mean_of_the_last_steps_and_a_resumed_run_averages_the_same(
    tmp_path):
  seen = WeightsAfterEachStep()
  model, result = _averaged_run(str(tmp_path / "straight"), seen, total_steps=4, first_step=3)
  assert result["averaged_steps"] == 2
  after = seen.weights[:4]  # after steps 1..4; the last epoch end sees the average
  assert not np.allclose(after[2][0], after[3][0])  # the steps moved the weights
  for i, w in enumerate(model.trainable_weights):
    np.testing.assert_allclose(w.numpy(), (after[2][i] + after[3][i]) / 2, rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(seen.weights[-1][i], w.numpy())
  # Stopped after step 3 (its checkpoint holds the last step's weights, not the average)
  # and resumed to step 4: the same average.
  _averaged_run(str(tmp_path / "resumed"), WeightsAfterEachStep(), total_steps=3, first_step=3)
  resumed, result = _averaged_run(str(tmp_path / "resumed"), WeightsAfterEachStep(),
                                  total_steps=4, first_step=3)
  assert result["averaged_steps"] == 2 and result["resumed_from_step"] == 3
  for a, b in zip(resumed.trainable_weights, model.trainable_weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_the_last_evaluation_is_of_the_last_step_not_of_the_average(tmp_path):
  """With eval_fn, the result holds its last epoch-end figures: those of the last step's
  weights, taken before the average is written into the model."""
  vocab = data_lib.Vocabulary.build(SENTENCES)
  valid = lambda: data_lib.make_dataset(SENTENCES, vocab, batch_size=2, char_inputs=False,
                                        shuffle=False)
  seen, evaluated = WeightsAfterEachStep(), []

  def eval_of(model):
    evaluated.append([w.numpy().copy() for w in model.trainable_weights])
    return evaluate_perplexity(model, valid())
  model, result = _averaged_run(str(tmp_path / "run"), seen, total_steps=4, first_step=3,
                                eval_of=eval_of)
  assert len(evaluated) == 4  # one epoch per step
  for a, b in zip(evaluated[-1], seen.weights[3]):  # the weights after step 4
    np.testing.assert_array_equal(a, b)
  averaged = evaluate_perplexity(model, valid())
  last = result["valid_perplexity"]
  assert set(last) == {"forward", "backward", "mean"}
  for w, raw in zip(model.trainable_weights, seen.weights[3]):
    w.assign(raw)
  again = evaluate_perplexity(model, valid())
  for k in last:
    np.testing.assert_allclose(last[k], again[k], rtol=1e-6)
  assert abs(last["mean"] / averaged["mean"] - 1) > 1e-6
  _, plain = _averaged_run(str(tmp_path / "plain"), WeightsAfterEachStep(), total_steps=2,
                           first_step=1)
  assert "valid_perplexity" not in plain
  # Only at the end of the last epoch: one evaluation, the same figures.
  evaluated.clear()
  _, once = _averaged_run(str(tmp_path / "once"), WeightsAfterEachStep(), total_steps=4,
                          first_step=3, eval_of=eval_of, eval_every_epoch=False)
  assert len(evaluated) == 1
  for k in last:
    np.testing.assert_allclose(once["valid_perplexity"][k], last[k], rtol=1e-6)


def test_a_masked_weight_is_averaged_as_the_matrix_its_steps_used(tmp_path):
  """A weight with a mask is summed as weight * mask: its masked entries average to zero."""
  holder = {}

  def masks(model):
    kernel = model.trainable_variables[0]
    mask = tf.Variable(np.random.RandomState(0).rand(*kernel.shape) > 0.5, dtype=tf.float32)
    holder.update(kernel=kernel, mask=mask.numpy())
    return {kernel.ref(): mask}
  seen = WeightsAfterEachStep()
  _averaged_run(str(tmp_path), seen, total_steps=3, first_step=2, masks=masks)
  kernel = holder["kernel"].numpy()
  assert np.all(kernel[holder["mask"] == 0] == 0)
  np.testing.assert_allclose(kernel, (seen.weights[1][0] + seen.weights[2][0]) / 2
                             * holder["mask"], rtol=1e-6, atol=1e-7)


def test_an_average_from_before_the_first_step_is_refused():
  with pytest.raises(ValueError, match="first averaged step must be >= 1"):
    WeightAverage([tf.Variable(1.0)], 0)
