"""SavedModel export of a biLM with a serving signature for the representations."""

from __future__ import annotations

import os

import tensorflow as tf

from prunelm_tf.models.bilm import CUSTOM_OBJECTS, representation_model
from prunelm_tf.utils.files import atomic_path

keras = tf.keras


def serving_function(model: keras.Model, batch_size=None) -> tf.types.experimental.ConcreteFunction:
  """A concrete function ``ids -> {"representations": ...}`` of ``model``.

  ids: int32 [batch, time] token ids or [batch, time, chars] char ids, each
  row ``<S> words </S>`` and 0-padded; returns float32
  [batch, n_layers + 1, time - 2, 2 * proj].
  """
  reps = representation_model(model)
  spec = model.inputs[0]
  signature = tf.TensorSpec([batch_size] + spec.shape[1:].as_list(), tf.int32,
                            name=spec.name.split(":")[0])

  @tf.function(input_signature=[signature])
  def serve(ids):
    return {"representations": reps(ids, training=False)}

  return serve.get_concrete_function()


def export_saved_model(model: keras.Model, path: str) -> str:
  """Writes ``model`` (no optimizer) as a Keras SavedModel, atomically.

  The ``serving_default`` signature returns the layer representations, so the
  model serves without this package (``tf.saved_model.load``); with it,
  ``load_saved_model`` restores the Keras model including the LM head.
  """
  with atomic_path(path) as tmp:
    model.save(tmp, include_optimizer=False, save_format="tf",
               signatures={"serving_default": serving_function(model)})
  return path


def load_saved_model(path: str) -> keras.Model:
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no SavedModel directory at {path}.")
  return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
