"""Calibration of layer-wise one-shot pruning on a biLM: what each matrix really sees.

For every prunable matrix of a model built by ``build_bilm`` (tfmot wrappers
stripped) this module accumulates the Gram matrix ``H = XᵀX / N`` of the inputs
``X`` that the matrix multiplies when the model runs on calibration batches
(inference: dropout off, padding excluded), and `prune_model_layerwise` prunes
the matrices one stage at a time with `layerwise.prune_obs` (SparseGPT) or
`layerwise.prune_wanda`.

What ``X`` is, per matrix (one row per real token unless said otherwise):

* ``char_cnn/kernel_i`` (width w): the im2col windows (w · char_dim) at every
  position of every real token, i.e. every window the convolution computes
  before max-pooling (the model multiplies them all). As the model does
  (``UniqueTokens``), the character path runs once per distinct token of a
  batch; each token's windows are weighted by its number of occurrences, which
  gives exactly the H of all positions at a fraction of the cost. (Most of
  those windows lie in the padding characters after the word, so the option
  ``char_windows="max"`` weights instead the windows that max-pooling selects.)
* ``highway_k/carry_kernel`` and ``highway_k/transform_kernel``: the highway
  layer's input (one H for both); ``token_projection/kernel``: its input; both
  weighted by occurrences like the convolutions.
* ``{direction}_lstm_l/kernel``: ``[x_t; h_{t-1}]`` over the real positions,
  with x_t the layer input as the model feeds it (skip connections included)
  and h_{t-1} the layer's own recurrent state (`LSTMWithProjection.internals`).
* ``{direction}_lstm_l/projection``: the cell output ``o_t ⊙ tanh(c_t)``
  (clipped c_t) before projection.
* ``softmax/kernel``: the top LSTM outputs of both directions (the shared
  softmax multiplies both); skipped for models without a softmax.
* ``word_embedding/embeddings`` is a lookup table, not a matrix product: its
  "inputs" are one-hot, so H is the diagonal of the calibration token
  frequencies. OBS then has nothing to compensate with, and every word unseen in
  calibration (most of a vocabulary) is a dead input whose row would be zeroed.
  It is therefore pruned by magnitude (data-free, exact count) whatever the
  method.

Biases: by default each pruned matrix's bias (all but the LSTM projections
have one) is updated with it, as the weight of a constant input that is never
pruned (``update_bias``); it absorbs the shift of the mean output, large where
inputs have a large mean (character windows, highway inputs after relu).

Order (``upstream="pruned"``, SparseGPT's sequential convention): the word
embedding first (magnitude), then stages forward through the model: char CNN
kernels, each highway layer, the token projection, then per LSTM layer its two
kernels (both directions in one pass) and then its two projections (collected
after that layer's kernels are pruned), then the softmax. Each stage's H is
collected in one pass over the calibration batches through the model as pruned
so far, running the model only up to that stage. ``upstream="dense"`` instead
collects every H from the dense model in a single pass (cheaper; on the ELMo
fixture neither was consistently better).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import \
    PruneLowMagnitude

from prunelm_tf.compression.shared import layerwise
from prunelm_tf.compression.shared.targets import prunable_weights

keras = tf.keras

METHODS = ("obs", "wanda")
# Sentences per batch of calibration text (every method that reads --calibration).
CALIBRATION_BATCH = 32
UPSTREAM = ("pruned", "dense")
CHAR_WINDOWS = ("all", "max")
DIRECTIONS = ("forward", "backward")


class _BiLM:
  """The structure of a biLM (from its layer names) and its forward pass up to any stage.

  Group keys name an H: the matrix name, except ``highway_k`` (shared by the
  carry and transform kernels of layer k).
  """

  def __init__(self, model: keras.Model, char_windows: str = "all"):
    if char_windows not in CHAR_WINDOWS:
      raise ValueError(f"char_windows must be one of {CHAR_WINDOWS} (which character-CNN "
                       f"windows make H), got {char_windows!r}.")
    wrapped = [l.name for l in model.layers if isinstance(l, PruneLowMagnitude)]
    if wrapped:
      raise ValueError(f"layer-wise pruning needs a model without tfmot pruning wrappers; layers "
                       f"{wrapped} are wrapped. Call tfmot.sparsity.keras.strip_pruning(model) "
                       "first.")
    self.model = model
    names = {l.name for l in model.layers}
    if "forward_lstm_0" not in names:
      raise ValueError("layer-wise pruning needs a biLM built by build_bilm (layer "
                       f"'forward_lstm_0' not found in model {model.name!r}).")
    self.char = "char_cnn" in names
    self.n_highway = sum(1 for n in names if n.startswith("highway_"))
    self.n_layers = sum(1 for n in names if n.startswith("forward_lstm_"))
    self.skip = [f"forward_skip_{l}" in names for l in range(self.n_layers)]
    self.softmax = "softmax" in names
    self.input_rank = model.inputs[0].shape.rank
    self.max_chars = model.inputs[0].shape[-1] if self.char else None
    self.weights = prunable_weights(model)
    self.char_windows = char_windows
    self._functions = {}

    # The group each matrix reads, and the stages in forward order (stage k
    # collects the groups `stages[k]`); `depth` is a group's stage index, i.e.
    # how far the model must run to see its inputs.
    self.group_of: Dict[str, str] = {}
    self.depth: Dict[str, int] = {}
    self.stages: List[List[str]] = []

    def stage(groups_to_names: Dict[str, List[str]]):
      for group, matrix_names in groups_to_names.items():
        self.depth[group] = len(self.stages)
        for n in matrix_names:
          self.group_of[n] = group
      self.stages.append(list(groups_to_names))

    if self.char:
      cnn = model.get_layer("char_cnn")
      stage({f"char_cnn/kernel_{i}": [f"char_cnn/kernel_{i}"] for i in range(len(cnn.filters))})
      for k in range(self.n_highway):
        stage({f"highway_{k}": [f"highway_{k}/carry_kernel", f"highway_{k}/transform_kernel"]})
      stage({"token_projection/kernel": ["token_projection/kernel"]})
    for l in range(self.n_layers):
      stage({f"{d}_lstm_{l}/kernel": [f"{d}_lstm_{l}/kernel"] for d in DIRECTIONS})
      stage({f"{d}_lstm_{l}/projection": [f"{d}_lstm_{l}/projection"] for d in DIRECTIONS})
    if self.softmax:
      stage({"softmax/kernel": ["softmax/kernel"]})

  # --- matrices -------------------------------------------------------------

  def matrix(self, name: str) -> np.ndarray:
    """The weight as a Keras kernel [in, out] (convolutions: [width * dim, count])."""
    values = self.weights[name].numpy()
    return values.reshape(-1, values.shape[-1])

  def assign(self, name: str, matrix: np.ndarray) -> None:
    variable = self.weights[name]
    variable.assign(matrix.reshape(variable.shape).astype(variable.dtype.as_numpy_dtype))

  def bias(self, name: str) -> Optional[tf.Variable]:
    """The bias added to the output of matrix ``name`` (None for the LSTM projections)."""
    layer_name, weight = name.split("/")
    layer = self.model.get_layer(layer_name)
    if weight.startswith("kernel_"):  # char_cnn/kernel_i
      return layer.biases[int(weight.split("_")[1])]
    if weight in ("carry_kernel", "transform_kernel"):
      return getattr(layer, weight.replace("kernel", "bias"))
    if weight == "kernel":  # token_projection, LSTM kernels, softmax
      return layer.bias
    return None

  def in_dim(self, name: str) -> int:
    shape = self.weights[name].shape
    return int(np.prod(shape[:-1]))

  # --- inputs ---------------------------------------------------------------

  def as_ids(self, batch, what: str) -> np.ndarray:
    """One calibration batch as the model's int32 input array."""
    if isinstance(batch, Mapping):
      key = "char_ids" if self.char else "token_ids"
      if key not in batch:
        raise ValueError(f"{what}: a dict batch needs the model's input {key!r}; got keys "
                         f"{sorted(batch)}.")
      batch = batch[key]
    ids = np.asarray(batch.numpy() if hasattr(batch, "numpy") else batch)
    expected = ("[batch, time, %d] char ids" % self.max_chars if self.char
                else "[batch, time] token ids")
    if (not np.issubdtype(ids.dtype, np.integer) or ids.ndim != self.input_rank
        or (self.char and ids.shape[-1] != self.max_chars)):
      raise ValueError(f"{what}: this model reads int32 {expected} (0 = padding); got a batch of "
                       f"{ids.dtype} {ids.shape}.")
    return ids.astype(np.int32)

  def mask(self, ids: np.ndarray) -> np.ndarray:
    present = ids > 0
    if self.char:
      present = present.any(axis=-1)
    return present.astype(np.float32)

  def _function(self, key, fn, *signature):
    """``fn`` as a tf.function traced once (any batch, time or token count)."""
    if key not in self._functions:
      self._functions[key] = tf.function(fn, input_signature=signature)
    return self._functions[key]

  def inputs(self, ids: np.ndarray, groups: Sequence[str]
             ) -> Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]]:
    """The inputs of each group on one batch: ``{group: (rows [n, in], counts [n] or None)}``.

    Runs the model (as it currently is) only as far as the deepest group.
    """
    wanted = set(groups)
    deepest = max(self.depth[g] for g in wanted)
    out: Dict[str, Tuple[np.ndarray, Optional[np.ndarray]]] = {}
    mask = self.mask(ids)
    real = mask > 0
    model = self.model

    def need(stage_index: int) -> bool:
      return deepest >= stage_index

    stage = 0
    if self.char:
      flat = ids.reshape(-1, ids.shape[-1])
      unique, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
      inverse = inverse.reshape(-1)
      counts = np.where(unique.any(axis=1), counts, 0)  # batch padding: not a token
      cnn = model.get_layer("char_cnn")
      table = np.concatenate([np.zeros((1, cnn.embedding_dim), np.float32),
                              cnn.char_embedding.numpy()])
      chars = table[unique]  # [n_unique, max_chars, dim]
      for i, (width, _) in enumerate(cnn.filters):
        group = f"char_cnn/kernel_{i}"
        if group in wanted:
          positions = chars.shape[1] - width + 1
          windows = np.concatenate([chars[:, k:k + positions] for k in range(width)], axis=-1)
          if self.char_windows == "max":
            # Each filter's output is its largest window: weight every window by the
            # number of filters that select it (in the model as it is now).
            kernel = self.matrix(group)
            conv = windows @ kernel + cnn.biases[i].numpy()  # [n_unique, positions, count]
            chosen = np.argmax(conv, axis=1)  # [n_unique, count]
            selected = np.zeros(conv.shape[:2], np.int64)
            np.add.at(selected, (np.arange(len(chosen))[:, None], chosen), 1)
            weight = (selected * counts[:, None]).reshape(-1)
            keep = weight > 0
            out[group] = (windows.reshape(-1, windows.shape[-1])[keep], weight[keep])
          else:
            out[group] = (windows.reshape(-1, windows.shape[-1]),
                          np.repeat(counts, positions))
      stage += 1
      if need(stage):
        width = tf.TensorSpec([None, cnn.n_filters], tf.float32)
        x = self._function("char_cnn", lambda u: cnn(u[tf.newaxis])[0],
                           tf.TensorSpec([None, ids.shape[-1]], tf.int32))(unique)
        for k in range(self.n_highway):
          if f"highway_{k}" in wanted:
            out[f"highway_{k}"] = (x.numpy(), counts)
          stage += 1
          if not need(stage):
            return out
          highway = model.get_layer(f"highway_{k}")
          x = self._function(f"highway_{k}", highway, width)(x)
        if "token_projection/kernel" in wanted:
          out["token_projection/kernel"] = (x.numpy(), counts)
        stage += 1
        if not need(stage):
          return out
        x = self._function("token_projection", model.get_layer("token_projection"), width)(x)
        x = x.numpy()
        embedding = x[inverse].reshape(ids.shape[:2] + (x.shape[-1],)) * mask[:, :, None]
      else:
        return out
    else:
      table = model.get_layer("word_embedding").embeddings.numpy()
      embedding = table[ids] * mask[:, :, None]

    states = {d: tf.constant(embedding, tf.float32) for d in DIRECTIONS}
    mask_t = tf.constant(mask)
    sequence = tf.TensorSpec([None, None, embedding.shape[-1]], tf.float32)
    mask_spec = tf.TensorSpec([None, None], tf.float32)
    for l in range(self.n_layers):
      stage += 2  # past this layer's kernel and projection stages
      for d in DIRECTIONS:
        lstm = model.get_layer(f"{d}_lstm_{l}")
        collect = any(g in wanted for g in (f"{d}_lstm_{l}/kernel", f"{d}_lstm_{l}/projection"))
        if collect:
          kernel_inputs, cell_outputs = self._function(
              f"{d}_lstm_{l}/internals", lambda x, m, lstm=lstm: lstm.internals([x, m]),
              sequence, mask_spec)(states[d], mask_t)
          if f"{d}_lstm_{l}/kernel" in wanted:
            out[f"{d}_lstm_{l}/kernel"] = (kernel_inputs.numpy()[real], None)
          if f"{d}_lstm_{l}/projection" in wanted:
            out[f"{d}_lstm_{l}/projection"] = (cell_outputs.numpy()[real], None)
        if need(stage):
          output = self._function(f"{d}_lstm_{l}", lambda x, m, lstm=lstm: lstm([x, m]),
                                  sequence, mask_spec)(states[d], mask_t)
          states[d] = output + states[d] if self.skip[l] else output
      if not need(stage):
        return out
    if "softmax/kernel" in wanted:
      top = np.concatenate([states[d].numpy()[real] for d in DIRECTIONS])
      out["softmax/kernel"] = (top, None)
    return out


def _as_batches(bilm: _BiLM, batches: Iterable, what: str) -> List[np.ndarray]:
  if batches is None:
    raise ValueError(f"{what}: no calibration batches given; pass an iterable of model-input "
                     "arrays (token or char ids, 0 = padding).")
  out = [bilm.as_ids(b, what) for b in batches]
  tokens = sum(int(bilm.mask(b).sum()) for b in out)
  if not out or tokens == 0:
    raise ValueError(f"{what} is empty ({len(out)} batches, {tokens} real tokens): layer-wise "
                     "pruning needs calibration sentences. Pass model-input arrays of real text.")
  return out


def _accumulate(bilm: _BiLM, batches: List[np.ndarray], groups: Sequence[str],
                in_dims: Mapping[str, int]) -> Dict[str, layerwise.GramAccumulator]:
  grams = {g: layerwise.GramAccumulator(in_dims[g]) for g in groups}
  for ids in batches:
    for group, (rows, counts) in bilm.inputs(ids, groups).items():
      grams[group].add(rows, counts)
  return grams


def _group_dims(bilm: _BiLM) -> Dict[str, int]:
  return {g: bilm.in_dim(n) for n, g in bilm.group_of.items()}


def collect_grams(model: keras.Model, names: Sequence[str], batches: Iterable, *,
                  char_windows: str = "all") -> Dict[str, layerwise.GramAccumulator]:
  """The inputs' Gram accumulators of ``names``, from the model as it is, in one pass.

  Args:
    model: a biLM built by ``build_bilm`` (no tfmot wrappers).
    names: prunable matrix names (``word_embedding/embeddings`` excluded), e.g.
      ``["forward_lstm_0/kernel", "char_cnn/kernel_2"]``.
    batches: iterable of model-input arrays: int32 token ids [batch, time] or
      char ids [batch, time, max_chars] (0 = padding), or dicts holding them.
    char_windows: "all" or "max", as for `prune_model_layerwise`.

  Returns:
    ``{name: GramAccumulator}``; matrices that share their input (the two
    kernels of a highway layer) share the accumulator.

  Raises:
    ValueError: unknown names, bad or empty batches.
  """
  bilm = _BiLM(model, char_windows=char_windows)
  unknown = [n for n in names if n not in bilm.group_of]
  if unknown:
    raise ValueError(f"no calibration inputs for {unknown}: the matrices with inputs are "
                     f"{sorted(bilm.group_of)}.")
  data = _as_batches(bilm, batches, "batches")
  groups = sorted({bilm.group_of[n] for n in names})
  grams = _accumulate(bilm, data, groups, _group_dims(bilm))
  return {n: grams[bilm.group_of[n]] for n in names}


def obs_pruner(model: keras.Model, names: Sequence[str], batches: Iterable, *,
               block_size: int = 128, damp: float = 0.01, char_windows: str = "all"
               ) -> Callable[[str, float], None]:
  """``prune(name, level)``: one matrix of ``model`` OBS-pruned *alone*, from the dense inputs.

  For OBS-based sensitivity curves (`allocation.sensitivity_curves`): the H
  of every matrix in ``names`` is collected once from ``model`` as it is
  (dense), and each call prunes one matrix with the OBS update to exactly
  ``level``; the caller restores it. Matrices without calibration inputs (a
  word embedding) are magnitude-pruned.
  """
  bilm = _BiLM(model, char_windows=char_windows)
  with_inputs = [n for n in names if n in bilm.group_of]
  grams = {n: acc.gram() for n, acc in collect_grams(
      model, with_inputs, batches, char_windows=char_windows).items()}

  def prune(name: str, level: float) -> None:
    if name not in grams:
      bilm.assign(name, layerwise.prune_magnitude(bilm.matrix(name), level))
      return
    bilm.assign(name, layerwise.prune_obs(bilm.matrix(name), grams[name], level,
                                          block_size=block_size, damp=damp))
  return prune


def prune_model_layerwise(model: keras.Model, targets: Mapping[str, float], batches: Iterable, *,
                          method: str = "obs", block_size: int = 128, damp: float = 0.01,
                          min_tokens_factor: float = 4.0,
                          heldout_batches: Optional[Iterable] = None,
                          upstream: str = "pruned", update_bias: bool = True,
                          char_windows: str = "all", projection_after_kernel: bool = True
                          ) -> Dict[str, Dict]:
  """Prunes ``model`` in place, one matrix at a time, from the inputs each matrix sees.

  Args:
    model: a biLM built by ``build_bilm`` (char or word input, with or without
      softmax, e.g. an imported ELMo model), tfmot wrappers stripped.
    targets: ``{"layer/weight": sparsity}`` with 0 <= sparsity < 1; weights not
      named (or at 0) are left unchanged.
    batches: calibration data, an iterable of model-input arrays: int32 token
      ids [batch, time] or char ids [batch, time, max_chars] (0 = padding), or
      dicts holding them (a ``make_dataset`` dataset). Read once into memory.
    method: "obs" (SparseGPT, `layerwise.prune_obs`) or "wanda".
    block_size: SparseGPT block of input rows (obs only).
    damp: SparseGPT dampening λ (obs only).
    min_tokens_factor: refuse calibration data with fewer real tokens (padding
      excluded, BOS/EOS included) than this factor times the largest input
      dimension among the targeted matrices (fewer tokens than inputs leaves H
      rank-deficient; SparseGPT used ~20x). 0 disables the check.
    heldout_batches: optional batches (same format) on which each matrix's
      reconstruction error is also measured, through the same model state.
    upstream: "pruned": each stage's H comes from the model as pruned so far
      (one pass over the batches per stage); "dense": every H comes from the
      dense model in one pass before any pruning.
    update_bias: also update the bias of each pruned matrix that has one (all
      but the LSTM projections): obs treats it as the weight of a constant
      input (`layerwise.prune_obs_affine`), wanda gets the mean-preserving
      `layerwise.bias_correction`. Errors then include the bias change. On by
      default: on the ELMo fixture at 80 % it cut the representation error of
      obs by a quarter (benchmarks/layerwise_elmo.py); False is SparseGPT and
      Wanda as published.
    char_windows: which character-CNN windows make H: "all" (every window of
      every real token, what the convolution computes) or "max" (the windows
      that max-pooling selects in the model as it is, each counted once per
      filter selecting it: what the token embedding actually depends on).
    projection_after_kernel: True collects each LSTM projection's H after that
      layer's kernels are pruned (cell outputs of the pruned kernel); False
      collects it in the kernels' pass, from the dense kernels.

  Returns:
    ``{name: record}`` for every named weight, in pruning order; a record has
    ``method`` ("obs", "wanda", "magnitude" for the word embedding, "none" for a
    target of 0), ``bias_updated``, ``target``, ``sparsity`` (reached: zeros / size),
    ``calibration_error`` and ``heldout_error`` (relative ``‖X(W − Ŵ)‖² /
    ‖XW‖²`` on the calibration H and on held-out inputs; None when not
    measured), ``num_tokens`` (rows of X: tokens, or character windows for the
    convolutions, both directions for the softmax), ``seconds`` (the pruning
    math), ``stage`` (index of the calibration pass that collected its H;
    None without one) and ``calibration_seconds`` (that pass, shared with the
    other matrices of the stage).

  Raises:
    ValueError: checked before any weight changes: a wrapped or non-biLM
      model, an unknown option value, unknown target names or a sparsity
      outside [0, 1), empty or malformed batches, too few tokens (the message
      gives how many are needed and given), non-finite weights or biases of
      a target. A non-finite H (naming the matrix) is found during the
      stages; the model's weights are then restored to what they were before
      the call, as on any other error.
  """
  bilm = _BiLM(model, char_windows=char_windows)
  if method not in METHODS:
    raise ValueError(f"layer-wise pruning method must be one of {METHODS}, got {method!r}.")
  if upstream not in UPSTREAM:
    raise ValueError(f"upstream must be one of {UPSTREAM} (where each H is collected), got "
                     f"{upstream!r}.")
  if not min_tokens_factor >= 0:
    raise ValueError(f"min_tokens_factor must be >= 0 (0 = no check), got {min_tokens_factor}.")
  unknown = sorted(set(targets) - set(bilm.weights))
  if unknown:
    raise ValueError(f"targets name weights this model cannot prune: {unknown}. The prunable "
                     f"weights are: {', '.join(bilm.weights)}.")
  for name, sparsity in targets.items():
    if not 0.0 <= float(sparsity) < 1.0:
      raise ValueError(f"target sparsity of {name} must be in [0, 1), got {sparsity}.")
  data = _as_batches(bilm, batches, "batches")
  heldout = _as_batches(bilm, heldout_batches, "heldout_batches") \
      if heldout_batches is not None else None
  data_aware = [n for n in bilm.group_of if targets.get(n, 0.0) > 0]
  tokens = sum(int(bilm.mask(b).sum()) for b in data)
  if data_aware:
    widest = max(data_aware, key=bilm.in_dim)
    needed = int(math.ceil(min_tokens_factor * bilm.in_dim(widest)))
    if tokens < needed:
      raise ValueError(
          f"calibration data too small: {tokens} real tokens given, {needed} needed "
          f"(min_tokens_factor={min_tokens_factor} x {bilm.in_dim(widest)} inputs of {widest}). "
          "Pass more calibration sentences (or lower min_tokens_factor, at the risk of a "
          "rank-deficient H).")

  for name in targets:
    for variable in (bilm.weights[name], bilm.bias(name) if update_bias and name in data_aware
                     else None):
      if variable is not None and not np.isfinite(variable.numpy()).all():
        raise ValueError(f"the weights of {name} are not finite ({variable.name} holds NaN or "
                         "inf): pruning cannot repair them. Check the model file.")

  dims = _group_dims(bilm)
  changed = [bilm.weights[n] for n in targets]
  if update_bias:
    changed += [b for b in (bilm.bias(n) for n in data_aware) if b is not None]
  original = [(v, v.numpy()) for v in changed]
  records: Dict[str, Dict] = {}

  def prune_data_free():
    """Targets without calibration (the word embedding: magnitude) or with target 0."""
    for name, sparsity in targets.items():
      if name in data_aware:
        continue
      values = bilm.weights[name].numpy()
      if float(sparsity) > 0:
        values = layerwise.prune_magnitude(values, float(sparsity))
        bilm.weights[name].assign(values)
      records[name] = {
          "method": "magnitude" if float(sparsity) > 0 else "none", "bias_updated": False,
          "target": float(sparsity),
          "sparsity": (values.size - int(np.count_nonzero(values))) / values.size,
          "calibration_error": None, "heldout_error": None, "num_tokens": None,
          "seconds": 0.0, "stage": None, "calibration_seconds": 0.0}

  try:
    stages = []
    for s in bilm.stages:
      if not projection_after_kernel and s[0].endswith("/projection"):
        stages[-1] = stages[-1] + s  # with the layer's kernels, before they are pruned
      else:
        stages.append(list(s))
    stages = [[g for g in s if any(bilm.group_of[n] == g for n in data_aware)] for s in stages]
    stages = [s for s in stages if s]
    dense_upstream = upstream == "dense" and bool(stages)
    if dense_upstream:
      stages = [[g for s in stages for g in s]]
    else:
      prune_data_free()  # the word embedding is upstream of every other matrix
    for stage, groups in enumerate(stages):
      t = time.time()
      grams = _accumulate(bilm, data, groups, dims)
      held = _accumulate(bilm, heldout, groups, dims) if heldout is not None else None
      collect_seconds = time.time() - t
      logging.info("layer-wise %s: collected H of %s in %.1f s", method, ", ".join(groups),
                   collect_seconds)
      if dense_upstream:
        prune_data_free()
      for name in [n for n in data_aware if bilm.group_of[n] in groups]:
        group = bilm.group_of[name]
        h = grams[group].gram()
        if not np.isfinite(h).all():
          raise ValueError(f"the calibration inputs of {name} are not finite (H has NaN or inf): "
                           "check the upstream weights and the calibration data. No weight was "
                           "changed.")
        t = time.time()
        weight = bilm.matrix(name)
        sparsity = float(targets[name])
        bias = bilm.bias(name) if update_bias else None
        mean = grams[group].mean() if bias is not None else None
        new_bias = None
        if method == "obs" and bias is not None:
          pruned, new_bias = layerwise.prune_obs_affine(
              weight, bias.numpy(), h, mean, sparsity, block_size=block_size, damp=damp)
        elif method == "obs":
          pruned = layerwise.prune_obs(weight, h, sparsity, block_size=block_size, damp=damp)
        else:
          pruned = layerwise.prune_wanda(weight, h, sparsity)
          if bias is not None:
            new_bias = layerwise.bias_correction(weight, pruned, bias.numpy(), mean)
        seconds = time.time() - t
        change = None if new_bias is None else bias.numpy() - new_bias

        def error(acc):
          return layerwise.reconstruction_error(
              weight, pruned, acc.gram(), mean=None if change is None else acc.mean(),
              bias_change=change)

        heldout_error = None
        if held is not None and np.isfinite(held[group].gram()).all():
          heldout_error = error(held[group])
        bilm.assign(name, pruned)
        if new_bias is not None:
          bias.assign(new_bias)
        records[name] = {
            "method": method, "bias_updated": new_bias is not None, "target": sparsity,
            "sparsity": (pruned.size - int(np.count_nonzero(pruned))) / pruned.size,
            "calibration_error": error(grams[group]),
            "heldout_error": heldout_error, "num_tokens": grams[group].count,
            "seconds": seconds, "stage": stage, "calibration_seconds": collect_seconds}
        logging.info("layer-wise %s %s: sparsity %.4f, error %.4g (held-out %s), %d rows of X, "
                     "%.1f s", method, name, records[name]["sparsity"],
                     records[name]["calibration_error"],
                     "-" if heldout_error is None else f"{heldout_error:.4g}",
                     records[name]["num_tokens"], seconds)
  except BaseException:
    for variable, values in original:
      variable.assign(values)
    raise
  return records
