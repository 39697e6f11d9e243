"""run_training's resume edge: a run resumed with no step left still ends its callbacks."""

import pytest
import tensorflow as tf

from prunelm_tf import data as data_lib
from prunelm_tf.models import BiLMConfig
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.training.loop import LossSpec, Trainer, run_training

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


def test_kd_and_distill_terms_add_up_in_one_step():
  """kd+distill: both terms are computed against the teacher and summed into the loss."""
  from prunelm_tf.compression.finetune import RetrainConfig  # pylint: disable=import-outside-toplevel
  config = RetrainConfig(objective="kd+distill")
  assert config.uses_kd and config.uses_distill and not config.uses_lm and config.needs_softmax
  tf.keras.utils.set_random_seed(0)
  vocab = data_lib.Vocabulary.build(SENTENCES)
  arch = BiLMConfig(vocab_size=len(vocab), token_encoder="word", lstm_dim=8, projection_dim=4,
                    n_layers=1, dropout=0.0)
  teacher, student = build_bilm(arch), build_bilm(arch)
  batch = next(iter(data_lib.make_dataset(SENTENCES, vocab, batch_size=2, char_inputs=False,
                                          shuffle=False)))
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
