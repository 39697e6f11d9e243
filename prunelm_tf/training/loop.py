"""The training loop shared by dense training and pruning with retraining.

A custom loop rather than ``model.fit``: resuming mid-epoch at the exact batch,
per-step TensorBoard scalars (tokens/s, per-direction perplexity) and the LM
loss over padded variable-length batches are all simpler to get right here.
tfmot's ``UpdatePruningStep`` is driven the documented way for custom loops
(``on_train_begin`` / ``on_epoch_end``) by the caller through ``callbacks``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from prunelm_tf.models.bilm import (lm_targets, lm_token_losses, output_model,
                                    representation_model)
from prunelm_tf.utils.progress import Progress

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


# How the representation-distillation term compares a layer of the student with the
# teacher's (`LossSpec.distill_loss`).
DISTILL_LOSSES = ("mse", "layer_nmse", "cosine")


@dataclasses.dataclass
class LossSpec:
  """What the training objective is made of.

  lm_weight: weight of the mean per-token LM loss (forward + backward) / 2.
  num_sampled: sampled-softmax samples (0 = full softmax).
  distill_weight: weight of the distillation term between the model's
    representations and ``teacher``'s (same input), as ``distill_loss`` says:
    ``"mse"``, the squared difference averaged over layers, positions (padding
    included) and units; ``"layer_nmse"``, per layer the squared error over the
    batch's words divided by the teacher layer's squared norm there (a relative
    error: every layer counts alike whatever its scale); ``"cosine"``, per layer
    1 - the cosine of each word's two vectors, averaged over the words. The two
    per-layer kinds are averaged over the layers with ``distill_layer_weights``
    (token layer first; () = equal).
  kd_weight: weight of the knowledge-distillation term: KL(teacher || student)
    of the next-word (forward) and previous-word (backward) distributions at
    temperature ``temperature``, scaled by temperature² (Hinton et al. 2015),
    averaged over every real prediction of both directions. Needs the
    teacher's softmax.
  temperature: softening of both distributions in the KD term (> 0).
  """
  lm_weight: float = 1.0
  num_sampled: int = 0
  distill_weight: float = 0.0
  distill_loss: str = "mse"
  distill_layer_weights: Tuple[float, ...] = ()
  teacher: Optional[keras.Model] = None
  kd_weight: float = 0.0
  temperature: float = 1.0


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


def kd_divergence(student: Dict[str, tf.Tensor], teacher: Dict[str, tf.Tensor],
                  token_ids: tf.Tensor, temperature: float) -> tf.Tensor:
  """Mean KL(teacher || student) of the word distributions over real predictions.

  Args:
    student, teacher: dicts with ``forward_logits``/``backward_logits`` float32
      [batch, time, vocab].
    token_ids: int32 [batch, time] (0 = padding): which positions predict.
    temperature: both logits are divided by it.

  Returns:
    float32 scalar: the KL summed over the vocabulary, averaged over every
    real forward and backward prediction.
  """
  _, _, weights = lm_targets(token_ids)
  total = 0.0
  for key, positions in (("forward_logits", slice(None, -1)), ("backward_logits", slice(1, None))):
    t = tf.stop_gradient(teacher[key][:, positions]) / temperature
    s = student[key][:, positions] / temperature
    log_pt = tf.nn.log_softmax(t)
    kl = tf.reduce_sum(tf.exp(log_pt) * (log_pt - tf.nn.log_softmax(s)), axis=-1)
    total += tf.reduce_sum(kl * weights)
  return total / tf.maximum(2.0 * tf.reduce_sum(weights), 1.0)


# Terms of a step that are sums over the replicas' shares of the batch (the
# others are means, equal on every replica up to its share of the rows).
_SUMMED_TERMS = ("loss", "forward_nll", "backward_nll", "num_predictions", "sampled_loss",
                 "distill_layer_nmse", "distill_cosine")


def _global_sum(value: tf.Tensor) -> tf.Tensor:
  """``value`` summed over every replica (itself in one process), without its gradient."""
  replica = tf.distribute.get_replica_context()
  if replica is not None and replica.num_replicas_in_sync > 1:
    return replica.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))
  return tf.stop_gradient(value)


def _global_count(count: tf.Tensor) -> tf.Tensor:
  """The number of predictions of the whole batch, over every replica (>= 1)."""
  return tf.maximum(_global_sum(count), 1.0)


class Trainer:
  """Runs optimizer steps on a biLM with an LM and/or distillation loss.

  With a ``strategy`` (`prunelm_tf.training.distribute`), the model and the
  optimizer must have been created in its scope; every worker passes the same
  global batch to `step`, each replica trains on its rows (``i mod
  num_replicas``), the LM loss is normalised by the whole batch's number of
  predictions and the gradients are summed over the replicas before clipping
  and the update: the step of one process on the whole batch.
  """

  def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
               loss: LossSpec, *, clip_norm: float = 0.0, seed: int = 0,
               strategy: Optional[tf.distribute.Strategy] = None):
    if (loss.distill_weight or loss.kd_weight) and loss.teacher is None:
      raise ValueError("a distillation loss needs the dense teacher model (LossSpec.teacher).")
    if loss.kd_weight and "forward_logits" not in loss.teacher.output:
      raise ValueError("knowledge distillation (kd) needs the teacher's softmax; this teacher "
                       "has none (an imported ELMo). Use representation distillation.")
    if loss.temperature <= 0:
      raise ValueError(f"the KD temperature must be > 0, got {loss.temperature}.")
    if loss.distill_loss not in DISTILL_LOSSES:
      raise ValueError(f"distill_loss must be one of {DISTILL_LOSSES}, got {loss.distill_loss!r}.")
    layers = (model.output["representations"].shape[1] if loss.distill_layer_weights else 0)
    if loss.distill_layer_weights and len(loss.distill_layer_weights) != layers:
      raise ValueError(f"--distill_layer_weights has {len(loss.distill_layer_weights)} weights; "
                       f"the model has {layers} layers (the token layer and each LSTM layer).")
    self.model = model
    self.optimizer = optimizer
    self.loss = loss
    self.clip_norm = clip_norm
    self.strategy = strategy
    keys = ["representations"] if loss.lm_weight == 0 else (
        ["forward_hidden", "backward_hidden"] if loss.num_sampled else
        ["forward_logits", "backward_logits"])
    if loss.distill_weight and "representations" not in keys:
      keys.append("representations")
    if loss.kd_weight:
      keys = [k for k in keys if not k.endswith("_hidden")]
      keys += [k for k in ("forward_logits", "backward_logits") if k not in keys]
    self._view = model if set(keys) == set(model.output) else output_model(model, keys)
    # The teacher gives only what the terms need: representations and/or logits.
    teacher_keys = (["representations"] if loss.distill_weight else []) + (
        ["forward_logits", "backward_logits"] if loss.kd_weight else [])
    self._teacher = (output_model(loss.teacher, teacher_keys)
                     if loss.teacher is not None and teacher_keys else None)
    self._seed = seed
    spec = model.inputs[0].type_spec
    token_spec = tf.TensorSpec([None, None], tf.int32)
    # Under a strategy, its run and the reduction are traced into one function
    # (called eagerly, every collective would be set up again each step).
    self._step_fn = tf.function(
        self._step if strategy is None else self._distributed_step, input_signature=[
            tf.TensorSpec([None] + spec.shape[1:].as_list(), tf.int32), token_spec])

  def _losses(self, inputs, token_ids, training: bool, share=1.0):
    """The loss terms; ``share`` is this replica's fraction of the batch's rows (1 in one process)."""
    outputs = self._view(inputs, training=training)
    terms = {}
    total = 0.0
    if self.loss.lm_weight:
      if self.loss.num_sampled and training:
        # A sampled loss is not a log-likelihood: it is reported under its own
        # name, never as a perplexity.
        fwd, bwd, count = _sampled_losses(self.model, outputs, token_ids,
                                          self.loss.num_sampled, self._seed)
        count = _global_count(count) if training else tf.maximum(count, 1.0)
        terms.update(sampled_loss=(fwd + bwd) / (2.0 * count))
      else:
        fwd, bwd, count = lm_token_losses(outputs, token_ids)
        terms.update(forward_nll=fwd, backward_nll=bwd, num_predictions=tf.maximum(count, 1.0))
        count = _global_count(count) if training else tf.maximum(count, 1.0)
      total += self.loss.lm_weight * (fwd + bwd) / (2.0 * count)
    teacher = (self._teacher(inputs, training=False) if self._teacher is not None else None)
    if self.loss.distill_weight and self.loss.distill_loss == "mse":
      target = teacher["representations"]
      squares = tf.square(outputs["representations"] - target)
      if self.num_replicas > 1:  # a replica may get no rows of a short last batch
        mse = tf.math.divide_no_nan(tf.reduce_sum(squares), tf.cast(tf.size(squares), tf.float32))
      else:
        mse = tf.reduce_mean(squares)
      terms["distill_mse"] = mse
      total += share * self.loss.distill_weight * mse
    elif self.loss.distill_weight:
      # Normalised by the whole batch's sums (over every replica), as the LM term is.
      value = self._layer_distillation(outputs["representations"], teacher["representations"],
                                       token_ids, training)
      terms[f"distill_{self.loss.distill_loss}"] = value
      total += self.loss.distill_weight * value
    if self.loss.kd_weight:
      kl = kd_divergence(outputs, teacher, token_ids, self.loss.temperature)
      terms["kd_kl"] = kl
      total += share * self.loss.kd_weight * self.loss.temperature ** 2 * kl
    terms["loss"] = total
    return terms

  def _layer_distillation(self, student, target, token_ids, training: bool):
    """The ``layer_nmse`` or ``cosine`` term (see `LossSpec`) over the batch's words."""
    words = tf.cast(token_ids[:, 2:] > 0, tf.float32)[:, None, :]  # [batch, 1, words]
    layers = student.shape[1]
    weights = tf.constant(self.loss.distill_layer_weights or (1.0,) * layers, tf.float32)
    weights /= tf.reduce_sum(weights)
    total = _global_sum if training else (lambda x: x)
    if self.loss.distill_loss == "layer_nmse":
      error = tf.reduce_sum(tf.reduce_sum(tf.square(student - target), -1) * words, [0, 2])
      norm = tf.reduce_sum(tf.reduce_sum(tf.square(target), -1) * words, [0, 2])
      per_layer = tf.math.divide_no_nan(error, total(norm))
    else:
      cosine = tf.reduce_sum(student * target, -1) / tf.maximum(
          tf.norm(student, axis=-1) * tf.norm(target, axis=-1), 1e-12)
      per_layer = tf.math.divide_no_nan(tf.reduce_sum((1.0 - cosine) * words, [0, 2]),
                                        total(tf.reduce_sum(words)))
    return tf.reduce_sum(weights * per_layer)

  @property
  def num_replicas(self) -> int:
    """Replicas that share each batch (1 without a strategy)."""
    return 1 if self.strategy is None else self.strategy.num_replicas_in_sync

  def _step(self, inputs, token_ids):
    replicas = self.num_replicas
    replica = tf.distribute.get_replica_context()
    share = 1.0
    if replicas > 1:  # this replica's rows of the global batch
      rows = tf.range(tf.cast(replica.replica_id_in_sync_group, tf.int32),
                      tf.shape(token_ids)[0], replicas)
      # Mean terms (distillation) are weighted by the replica's share of the
      # rows, so that their sum over replicas is the mean over the batch.
      share = tf.cast(tf.size(rows), tf.float32) / tf.cast(tf.shape(token_ids)[0], tf.float32)
      inputs, token_ids = tf.gather(inputs, rows), tf.gather(token_ids, rows)
    with tf.GradientTape() as tape:
      terms = self._losses(inputs, token_ids, training=True, share=share)
    variables = self.model.trainable_variables
    grads = tape.gradient(terms["loss"], variables)
    if replicas > 1:
      # Summed here rather than by the optimizer so that clipping sees the
      # gradient of the whole batch, as in one process.
      grads = replica.all_reduce(tf.distribute.ReduceOp.SUM,
                                 [tf.convert_to_tensor(g) for g in grads])
    if self.clip_norm:
      grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
      terms["grad_norm"] = norm
    if replicas > 1:
      self.optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
    else:
      self.optimizer.apply_gradients(zip(grads, variables))
    return terms

  def _distributed_step(self, inputs, token_ids):
    terms = self.strategy.run(self._step, args=(inputs, token_ids))
    return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM if k in _SUMMED_TERMS
                                    else tf.distribute.ReduceOp.MEAN, v, axis=None)
            for k, v in terms.items()}

  def step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """One optimizer step on ``batch`` (the global batch: the same on every worker)."""
    return self._step_fn(model_input(self.model, batch), batch["token_ids"])


class WeightAverage(tf.Module):
  """The uniform average of a model's trainable weights over its last training steps.

  Stochastic weight averaging (Izmailov et al., 2018) and the averaged SGD of
  AWD-LSTM (Merity et al., 2018) in one form: after every step from
  ``first_step`` on (1-based, the step just taken) the weights are added to a
  running sum; `apply` writes their mean into the model. ``masks`` maps a
  weight (``weight.ref()``) to its pruning mask: that weight is summed as
  ``weight * mask``, the matrix the step's forward pass used (tfmot re-applies
  its masks only before the next step), so averaged zeros stay zeros. The sums
  are variables of this module and go into the loop's checkpoint: a resumed run
  averages the same steps.
  """

  def __init__(self, variables: Sequence[tf.Variable], first_step: int,
               masks: Optional[Dict] = None):
    super().__init__(name="weight_average")
    if first_step < 1:
      raise ValueError(f"the first averaged step must be >= 1, got {first_step}.")
    self.first_step = int(first_step)
    self._variables = list(variables)
    masks = masks or {}
    self._masks = [masks.get(v.ref()) for v in self._variables]
    self.sums = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                             name=f"sum_{i}") for i, v in enumerate(self._variables)]
    self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")
    self._add = tf.function(self._add_now)

  def _add_now(self):
    for total, variable, mask in zip(self.sums, self._variables, self._masks):
      value = variable if mask is None else variable * tf.cast(mask, variable.dtype)
      total.assign_add(value)
    self.count.assign_add(1)

  def update(self, step: int) -> None:
    """Adds the weights after ``step`` (1-based) if it is one of the averaged steps."""
    if step >= self.first_step:
      self._add()

  def apply(self) -> int:
    """Writes the average into the model's weights; returns how many steps it holds."""
    count = int(self.count)
    if count:
      for total, variable in zip(self.sums, self._variables):
        variable.assign(total / tf.cast(count, total.dtype))
    return count


# model -> its traced per-batch NLL: traced once per model, not once per call
# (sensitivity curves evaluate the same model, with other weights, ~100 times).
_BATCH_NLL_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _batch_input_spec(model: keras.Model) -> tf.TensorSpec:
  """The model's id input (char or token ids) with any batch size."""
  return tf.TensorSpec([None] + model.inputs[0].type_spec.shape[1:].as_list(), tf.int32)


def _batch_nll_fn(model: keras.Model):
  """``(inputs, token_ids) -> (forward NLL sum, backward NLL sum, count)``, traced once per model."""
  fn = _BATCH_NLL_FNS.get(model)
  if fn is None:
    view = output_model(model, ["forward_logits", "backward_logits"])

    @tf.function(input_signature=[_batch_input_spec(model), tf.TensorSpec([None, None], tf.int32)])
    def fn(inputs, token_ids):
      return lm_token_losses(view(inputs, training=False), token_ids)
    _BATCH_NLL_FNS[model] = fn
  return fn


# model -> its traced representations: the similarity to the dense model is
# measured for every variant, over every batch of the eval text.
_REPRESENTATION_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def representations_fn(model: keras.Model):
  """``inputs -> representations`` [batch, layers, words, dim], traced once per model.

  Only the representations are computed (a model with a softmax skips its logits).
  """
  fn = _REPRESENTATION_FNS.get(model)
  if fn is None:
    view = representation_model(model)

    @tf.function(input_signature=[_batch_input_spec(model)])
    def fn(inputs):
      return view(inputs, training=False)
    _REPRESENTATION_FNS[model] = fn
  return fn


def evaluate_perplexity(model: keras.Model, dataset: tf.data.Dataset) -> Dict[str, float]:
  """Full-softmax perplexity per direction over every sentence of ``dataset``.

  Returns {"forward", "backward", "mean", "num_predictions"}; "mean" is
  exp of the mean of both directions' per-token NLL (as bilm-tf reports).
  """
  batch_nll = _batch_nll_fn(model)
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


def _learning_rate(optimizer: keras.optimizers.Optimizer, step: int) -> float:
  """The learning rate of ``step``: a schedule's value, or the optimizer's (mirrored) variable."""
  rate = optimizer.learning_rate
  if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
    rate = rate(step)
  return float(keras.backend.get_value(rate))


def _check_same_step_everywhere(strategy: tf.distribute.Strategy, step: int,
                                run_dir: str) -> None:
  """Refuses to go on when the workers resumed from checkpoints of different steps.

  Every worker checkpoints into its own run folder at the same steps; a
  worker killed while writing one can be a checkpoint behind the others.
  """
  steps = strategy.gather(strategy.run(lambda: tf.constant([step], tf.int64)), axis=0)
  steps = sorted(set(int(s) for s in steps.numpy()))
  if len(steps) > 1:
    raise ValueError(
        f"the workers resumed from checkpoints of different steps {steps} (this worker: step "
        f"{step} in {run_dir}/checkpoints); delete the newer checkpoints of the others (or every "
        "worker's checkpoints folder) so that all start from the same step.")


def run_training(trainer: Trainer, make_epoch_dataset, *, run_dir: str, steps_per_epoch: int,
                 total_steps: int, log_every_steps: int, checkpoint_every_steps: int,
                 eval_fn=None, callbacks=(), extra_scalars=None,
                 tensorboard_dir: Optional[str] = None,
                 average: Optional[WeightAverage] = None,
                 eval_every_epoch: bool = True) -> Dict:
  """The resumable step loop over epochs; returns throughput figures.

  With ``eval_fn``, the result also holds ``valid_perplexity``: its figures at
  the last epoch end this process reached, taken before ``average`` is applied
  (the weights of the last step).

  Args:
    trainer: the model, optimizer and loss.
    make_epoch_dataset: ``epoch -> tf.data.Dataset``, deterministic per epoch
      so that a resumed run skips exactly the batches already trained on.
    run_dir: holds ``checkpoints/`` and ``tensorboard/``.
    steps_per_epoch, total_steps: loop length.
    log_every_steps, checkpoint_every_steps: cadence of scalars and checkpoints.
    eval_fn: ``() -> {"forward", "backward", "mean"}`` run at each epoch end
      (after the callbacks' ``on_epoch_end``).
    eval_every_epoch: False runs ``eval_fn`` only at the end of the last epoch
      (when only the last figures are wanted, as a retraining's).
    callbacks: Keras callbacks driven as for a custom loop (tfmot's
      ``UpdatePruningStep``): ``on_train_begin``, ``on_train_batch_begin``,
      ``on_epoch_end``, and ``on_epoch_end`` once more after the last step.
    extra_scalars: ``step -> {name: value}`` written with each log (e.g. sparsity).
    tensorboard_dir: where scalars go; default ``run_dir/tensorboard``.
    average: a `WeightAverage` updated after every step, checkpointed with the
      run and written into the model after the last step (before the callbacks'
      last ``on_epoch_end``, which re-applies tfmot's masks).
  """
  model, optimizer = trainer.model, trainer.optimizer
  step = tf.Variable(0, dtype=tf.int64, name="global_step")
  state = dict(model=model, optimizer=optimizer, step=step)
  if average is not None:
    state["average"] = average
  checkpoint = tf.train.Checkpoint(**state)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, "checkpoints"),
                                       max_to_keep=2)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("Resumed from %s at step %d.", manager.latest_checkpoint, int(step))
  resumed_from = int(step)
  last_eval = None
  if trainer.strategy is not None:
    _check_same_step_everywhere(trainer.strategy, resumed_from, run_dir)
  writer = tf.summary.create_file_writer(tensorboard_dir or os.path.join(run_dir, "tensorboard"))
  # Callbacks (tfmot's mask ops) act on the model's variables: with a
  # strategy, in its cross-replica context.
  scope = (trainer.strategy.scope if trainer.strategy is not None else contextlib.nullcontext)
  with scope():
    for cb in callbacks:
      cb.set_model(model)
      cb.on_train_begin()

  trained_tokens = 0
  train_seconds = 0.0
  window = {"loss": 0.0, "fwd": 0.0, "bwd": 0.0, "count": 0.0, "tokens": 0, "t0": time.time()}
  epoch = int(step) // steps_per_epoch
  while int(step) < total_steps:
    skip = int(step) - epoch * steps_per_epoch
    steps_this_epoch = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
    progbar = Progress(steps_this_epoch, f"epoch {epoch + 1}", initial=skip)
    for batch in make_epoch_dataset(epoch).skip(skip).take(steps_this_epoch - skip):
      t0 = time.time()
      with scope():
        for cb in callbacks:
          cb.on_train_batch_begin(batch=int(step))
      terms = trainer.step(batch)
      step.assign_add(1)
      if average is not None:
        with scope():
          average.update(int(step))
      loss = float(terms["loss"])
      if not np.isfinite(loss):
        raise FloatingPointError(f"the training loss became {loss} at step {int(step)}; "
                                 "lower --learning_rate or set --clip_norm.")
      dt = time.time() - t0
      tokens = int(tf.math.count_nonzero(batch["token_ids"]))
      trained_tokens += tokens
      train_seconds += dt
      window["loss"] += loss
      window["tokens"] += tokens
      if "num_predictions" in terms:
        window["fwd"] += float(terms["forward_nll"])
        window["bwd"] += float(terms["backward_nll"])
        window["count"] += float(terms["num_predictions"])
      s = int(step)
      values = [("loss", loss)]
      if s % log_every_steps == 0 or s == total_steps:
        elapsed = max(time.time() - window["t0"], 1e-9)
        with writer.as_default(step=s):
          tf.summary.scalar("train/loss", window["loss"] / log_every_steps)
          tf.summary.scalar("train/learning_rate", _learning_rate(optimizer, s - 1))
          tf.summary.scalar("train/tokens_per_second", window["tokens"] / elapsed)
          if window["count"]:
            tf.summary.scalar("train/perplexity_forward", np.exp(window["fwd"] / window["count"]))
            tf.summary.scalar("train/perplexity_backward", np.exp(window["bwd"] / window["count"]))
          for name, value in (extra_scalars(s) if extra_scalars else {}).items():
            tf.summary.scalar(name, value)
        if window["count"]:
          values += [("ppl_fwd", np.exp(window["fwd"] / window["count"])),
                     ("ppl_bwd", np.exp(window["bwd"] / window["count"]))]
        window = {"loss": 0.0, "fwd": 0.0, "bwd": 0.0, "count": 0.0, "tokens": 0,
                  "t0": time.time()}
      progbar.update(s - epoch * steps_per_epoch, values=values)
      if s % checkpoint_every_steps == 0:
        manager.save(checkpoint_number=s)
    with scope():
      for cb in callbacks:
        cb.on_epoch_end(epoch)
    manager.save(checkpoint_number=int(step))
    if eval_fn is not None and (eval_every_epoch or int(step) >= total_steps):
      ppl = last_eval = eval_fn()
      logging.info("epoch %d step %d: valid perplexity forward %.2f backward %.2f mean %.2f",
                   epoch + 1, int(step), ppl["forward"], ppl["backward"], ppl["mean"])
      with writer.as_default(step=int(step)):
        for k in ("forward", "backward", "mean"):
          tf.summary.scalar(f"valid/perplexity_{k}", ppl[k])
    epoch += 1
  averaged_steps = None
  if average is not None:
    with scope():
      averaged_steps = average.apply()
    logging.info("The weights are the average of the last %d steps (from step %d).",
                 averaged_steps, average.first_step)
  # Once more after the last step, also when a resumed run had no step left:
  # the checkpoint of the last step may have been written before the previous
  # process reached its epoch end (tfmot's UpdatePruningStep re-applies the
  # masks here, so the final weights are always masked).
  with scope():
    for cb in callbacks:
      cb.on_epoch_end(max(epoch - 1, 0))
  writer.flush()
  return {"tokens_per_second": trained_tokens / train_seconds if train_seconds else None,
          "train_seconds": train_seconds, "resumed_from_step": resumed_from,
          **({} if average is None else {"averaged_steps": averaged_steps}),
          **({} if last_eval is None else {"valid_perplexity": {
              k: float(last_eval[k]) for k in ("forward", "backward", "mean")}})}
