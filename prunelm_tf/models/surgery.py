"""Whole-model surgery for low-rank factors: read, set and re-lay out a biLM's matrices.

``models.factors`` holds the layer-level pieces (a matrix as one weight or two factors);
this module works on a whole biLM built by ``models.bilm.build_bilm``: a matrix's dense
values (``matrix_values``), setting it (``assign_matrix``), and rebuilding the model with
other ranks (``rebuild``, ``multiply_back``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.factors import parts

keras = tf.keras


def _lstm_half(name: str) -> Optional[Tuple[str, str]]:
  """``("forward_lstm_0", "input_kernel")`` for an LSTM kernel half, else None."""
  layer, matrix = name.split("/")
  if "_lstm_" in layer and matrix in ("input_kernel", "recurrent_kernel"):
    return layer, matrix
  return None


def matrix_values(model: keras.Model, name: str) -> np.ndarray:
  """Matrix ``name`` (a `factorizable_matrices` name) of ``model`` as a dense array [m, n].

  Factorized matrices are multiplied back (float64 product, returned as float32).
  """
  half = _lstm_half(name)
  layer_name, matrix = name.split("/")
  layer = model.get_layer(layer_name)
  if half is not None and "kernel" in layer.__dict__:  # ELMo's joint kernel [x; h]
    kernel = layer.kernel.numpy()
    rows = layer.input_dim
    return kernel[:rows] if matrix == "input_kernel" else kernel[rows:]
  values = [p.numpy().astype(np.float64) for p in parts(layer, matrix)]
  out = values[0]
  for v in values[1:]:
    out = out @ v
  return out.astype(np.float32)


def assign_matrix(model: keras.Model, name: str,
                  value: Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]) -> None:
  """Sets matrix ``name`` of ``model``: a dense array, or factors ``(A, B)`` if it is factorized.

  Raises:
    ValueError: the form (dense or factors) or a shape does not match the model.
  """
  layer_name, matrix = name.split("/")
  layer = model.get_layer(layer_name)
  values = value if isinstance(value, tuple) else (value,)
  if _lstm_half(name) is not None and "kernel" in layer.__dict__:
    if len(values) != 1:
      raise ValueError(f"{name} is dense in this model; pass one array, not factors.")
    kernel = layer.kernel.numpy()
    rows = layer.input_dim
    if matrix == "input_kernel":
      kernel[:rows] = values[0]
    else:
      kernel[rows:] = values[0]
    layer.kernel.assign(kernel)
    return
  variables = parts(layer, matrix)
  if len(variables) != len(values):
    raise ValueError(f"{name} is held as {len(variables)} weight(s) in this model; got "
                     f"{len(values)} array(s).")
  for variable, v in zip(variables, values):
    if tuple(variable.shape) != tuple(np.shape(v)):
      raise ValueError(f"{name}: weight {variable.name} has shape {tuple(variable.shape)}, got "
                       f"{np.shape(v)}.")
    variable.assign(np.asarray(v, variable.dtype.as_numpy_dtype))


def _weights_by_name(model: keras.Model):
  out = {}
  for layer in model.layers:
    for w in layer.weights:
      out[f"{layer.name}/{w.name.split('/')[-1].split(':')[0]}"] = w
  return out


def transfer_weights(source: keras.Model, target: keras.Model, skip: Sequence[str] = ()) -> None:
  """Copies every weight ``layer/weight`` that both models hold with the same shape.

  Weights of ``target`` under a matrix named in ``skip`` (its factors, or the
  joint LSTM kernel of a skipped half) are left for `assign_matrix`.
  """
  src = _weights_by_name(source)
  skipped = set()
  for name in skip:
    half = _lstm_half(name)
    skipped.update({name, f"{name}_a", f"{name}_b"})
    if half is not None:
      skipped.add(f"{half[0]}/kernel")
  for key, variable in _weights_by_name(target).items():
    if key in skipped:
      continue
    if key not in src or tuple(src[key].shape) != tuple(variable.shape):
      raise ValueError(f"weight {key} {tuple(variable.shape)} of the target model has no "
                       "counterpart of that shape in the source model.")
    variable.assign(src[key])


def rebuild(model: keras.Model, config, new_config, factors=None) -> keras.Model:
  """``build_bilm(new_config)`` with the weights of ``model`` (of ``config``), ranks changed.

  Every weight is copied; a matrix that is dense in ``new_config`` gets the
  (multiplied-back) values of ``model``, one factorized in ``new_config`` gets
  ``factors[name]``.

  Args:
    model: a biLM of ``build_bilm(config)``.
    config, new_config: `BiLMConfig`s that differ in ``ranks`` only.
    factors: ``{name: (A, B)}`` for every matrix ``new_config`` factorizes.

  Raises:
    ValueError: the configs differ in more than ranks, or factors are missing
      or of the wrong shapes.
  """
  factors = dict(factors or {})
  if dataclasses.replace(config, ranks=()) != dataclasses.replace(new_config, ranks=()):
    raise ValueError("rebuild changes ranks only; the two configs differ in other fields.")
  missing = [n for n, _ in new_config.ranks if n not in factors]
  if missing:
    raise ValueError(f"no factors given for {missing}, which the new config factorizes.")
  names = list(dict.fromkeys([n for n, _ in config.ranks] + [n for n, _ in new_config.ranks]
                             + list(factors)))
  # An LSTM kernel half moves with its sibling (joint kernel <-> separate halves).
  split = {_lstm_half(n)[0] for n in names if _lstm_half(n)}
  names += [f"{layer}/{h}" for layer in sorted(split) for h in ("input_kernel", "recurrent_kernel")
            if f"{layer}/{h}" not in names]
  new = build_bilm(new_config)
  transfer_weights(model, new, skip=names)
  for name in names:
    assign_matrix(new, name, factors[name] if name in factors else matrix_values(model, name))
  return new


def multiply_back(model: keras.Model, config):
  """A dense copy of a factorized biLM: every factor pair multiplied back.

  Args:
    model: a biLM of ``build_bilm(config)``.
    config: its `BiLMConfig`.

  Returns:
    ``(dense_model, dense_config)``: ``config`` without ranks and a model of it
    that computes the same function (up to float32 rounding of the products).
  """
  dense_config = dataclasses.replace(config, ranks=())
  return rebuild(model, config, dense_config), dense_config
