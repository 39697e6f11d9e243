"""The training loop shared by dense training and pruning with retraining.

A custom loop rather than ``model.fit``: resuming mid-epoch at the exact batch,
per-step TensorBoard scalars (tokens/s, per-direction perplexity) and the LM
loss over padded variable-length batches are all simpler to get right here.
tfmot's ``UpdatePruningStep`` is driven the documented way for custom loops
(``on_train_begin`` / ``on_epoch_end``) by the caller through ``callbacks``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf.models.bilm import lm_targets, lm_token_losses, output_model

keras = tf.keras


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up, then constant, linear or cosine decay to zero at ``total_steps``."""

  def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
               schedule: str = "linear"):
    self.peak = float(peak)
    self.total_steps = max(int(total_steps), 1)
    self.warmup_steps = int(warmup_steps)
    self.schedule = schedule

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = tf.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
    progress = tf.clip_by_value(
        (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
    if self.schedule == "linear":
      decay = 1.0 - progress
    elif self.schedule == "cosine":
      decay = 0.5 * (1.0 + tf.cos(math.pi * progress))
    else:
      decay = tf.constant(1.0)
    return self.peak * warm * decay

  def get_config(self):
    return dict(peak=self.peak, total_steps=self.total_steps,
                warmup_steps=self.warmup_steps, schedule=self.schedule)


@dataclasses.dataclass
class LossSpec:
  """What the training objective is made of.

  lm_weight: weight of the mean per-token LM loss (forward + backward) / 2.
  num_sampled: sampled-softmax samples (0 = full softmax).
  distill_weight: weight of the MSE between the model's representations and
    ``teacher``'s (same input), averaged over layers, positions and units.
  """
  lm_weight: float = 1.0
  num_sampled: int = 0
  distill_weight: float = 0.0
  teacher: Optional[keras.Model] = None


def model_input(model: keras.Model, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
  """The batch entry the model reads: char ids (rank-3 input) or token ids."""
  return batch["char_ids" if model.inputs[0].shape.rank == 3 else "token_ids"]


def _sampled_losses(model: keras.Model, hidden, token_ids, num_sampled: int, seed: int):
  softmax = next(l for l in model.layers if l.name.endswith("softmax"))
  weights = tf.transpose(getattr(softmax, "layer", softmax).kernel)
  biases = getattr(softmax, "layer", softmax).bias
  fwd_t, bwd_t, mask = lm_targets(token_ids)
  valid = mask > 0
  losses = []
  for h, t in ((hidden["forward_hidden"][:, :-1], fwd_t), (hidden["backward_hidden"][:, 1:], bwd_t)):
    inputs = tf.boolean_mask(h, valid)
    labels = tf.cast(tf.boolean_mask(t, valid), tf.int64)[:, tf.newaxis]
    losses.append(tf.reduce_sum(tf.nn.sampled_softmax_loss(
        weights, biases, labels, inputs, num_sampled, weights.shape[0], seed=seed)))
  return losses[0], losses[1], tf.reduce_sum(mask)


class Trainer:
  """Runs optimizer steps on a biLM with an LM and/or distillation loss."""

  def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
               loss: LossSpec, *, clip_norm: float = 0.0, seed: int = 0):
    if loss.distill_weight and loss.teacher is None:
      raise ValueError("a distillation loss needs the dense teacher model (LossSpec.teacher).")
    self.model = model
    self.optimizer = optimizer
    self.loss = loss
    self.clip_norm = clip_norm
    keys = ["representations"] if loss.lm_weight == 0 else (
        ["forward_hidden", "backward_hidden"] if loss.num_sampled else
        ["forward_logits", "backward_logits"])
    if loss.distill_weight and "representations" not in keys:
      keys.append("representations")
    self._view = model if set(keys) == set(model.output) else output_model(model, keys)
    # The teacher's softmax is never needed: its representations only.
    self._teacher = (output_model(loss.teacher, ["representations"])
                     if loss.teacher is not None else None)
    self._seed = seed
    spec = model.inputs[0].type_spec
    token_spec = tf.TensorSpec([None, None], tf.int32)
    self._step_fn = tf.function(self._step, input_signature=[
        tf.TensorSpec([None] + spec.shape[1:].as_list(), tf.int32), token_spec])

  def _losses(self, inputs, token_ids, training: bool):
    outputs = self._view(inputs, training=training)
    terms = {}
    total = 0.0
    if self.loss.lm_weight:
      if self.loss.num_sampled and training:
        # A sampled loss is not a log-likelihood: it is reported under its own
        # name, never as a perplexity.
        fwd, bwd, count = _sampled_losses(self.model, outputs, token_ids,
                                          self.loss.num_sampled, self._seed)
        count = tf.maximum(count, 1.0)
        terms.update(sampled_loss=(fwd + bwd) / (2.0 * count))
      else:
        fwd, bwd, count = lm_token_losses(outputs, token_ids)
        count = tf.maximum(count, 1.0)
        terms.update(forward_nll=fwd, backward_nll=bwd, num_predictions=count)
      total += self.loss.lm_weight * (fwd + bwd) / (2.0 * count)
    if self.loss.distill_weight:
      target = self._teacher(inputs, training=False)["representations"]
      mse = tf.reduce_mean(tf.square(outputs["representations"] - target))
      terms["distill_mse"] = mse
      total += self.loss.distill_weight * mse
    terms["loss"] = total
    return terms

  def _step(self, inputs, token_ids):
    with tf.GradientTape() as tape:
      terms = self._losses(inputs, token_ids, training=True)
    variables = self.model.trainable_variables
    grads = tape.gradient(terms["loss"], variables)
    if self.clip_norm:
      grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
      terms["grad_norm"] = norm
    self.optimizer.apply_gradients(zip(grads, variables))
    return terms

  def step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return self._step_fn(model_input(self.model, batch), batch["token_ids"])


def evaluate_perplexity(model: keras.Model, dataset: tf.data.Dataset) -> Dict[str, float]:
  """Full-softmax perplexity per direction over every sentence of ``dataset``.

  Returns {"forward", "backward", "mean", "num_predictions"}; "mean" is
  exp of the mean of both directions' per-token NLL (as bilm-tf reports).
  """
  view = output_model(model, ["forward_logits", "backward_logits"])
  spec = model.inputs[0].type_spec

  @tf.function(input_signature=[tf.TensorSpec([None] + spec.shape[1:].as_list(), tf.int32),
                                tf.TensorSpec([None, None], tf.int32)])
  def batch_nll(inputs, token_ids):
    return lm_token_losses(view(inputs, training=False), token_ids)

  fwd = bwd = count = 0.0
  for batch in dataset:
    f, b, c = batch_nll(model_input(model, batch), batch["token_ids"])
    fwd += float(f)
    bwd += float(b)
    count += float(c)
  if count == 0:
    raise ValueError("the evaluation corpus produced no predictions (no sentences).")
  return {"forward": math.exp(fwd / count), "backward": math.exp(bwd / count),
          "mean": math.exp((fwd + bwd) / (2 * count)), "num_predictions": int(count)}
