"""SavedModel export of a biLM with a serving signature for the representations.

``load_saved_model`` takes a folder that may come from anywhere: it is checked
to be one of ours (a ``serving_default`` signature ``char_ids``/``token_ids`` ->
``representations``, Keras metadata naming only this package's layer classes)
before Keras reads it, and Keras then reads it in safe mode, so that no Python
code stored in the folder (a ``Lambda`` layer's bytecode) is ever run.
"""

from __future__ import annotations

import contextlib
import json
import os

from google.protobuf import message as protobuf_message
import tensorflow as tf

from prunelm_tf.models.bilm import CUSTOM_OBJECTS, representation_model
from prunelm_tf.models.config import MAX_CHARACTERS_PER_TOKEN
from prunelm_tf.utils.files import atomic_path

keras = tf.keras

# Keras classes a biLM of build_bilm is made of; anything else (Lambda, whose
# config carries Python bytecode, or an unknown custom class) is refused.
KERAS_CLASSES = frozenset(CUSTOM_OBJECTS) | {"Functional", "InputLayer", "Dense", "Embedding",
                                             "Dropout", "Add"}
# TensorFlow ops a biLM SavedModel of this package may hold: the model's arithmetic (every op
# `export_saved_model` writes for word or char input, factors, dropout, the softmax) and
# other pure tensor math. Nothing here reads or writes a file, prints, runs Python or talks
# to a network: `check_saved_model` refuses any other op, naming it, before the folder is
# loaded. Ops that read or write checkpoints are allowed only inside the SavedModel's own
# save / restore functions (`_SAVER_OPS`).
ALLOWED_OPS = frozenset("""
    Abs Add AddN AddV2 All Any ArgMax ArgMin AssignVariableOp BatchMatMul BatchMatMulV2
    BatchMatMulV3 BiasAdd BroadcastArgs BroadcastGradientArgs BroadcastTo Cast Ceil ConcatV2
    Const Conv2D Cumsum DisableCopyOnRead Div DivNoNan Einsum Elu Equal Erf Exp ExpandDims Fill
    Floor FloorDiv FloorMod Gather GatherNd GatherV2 Greater GreaterEqual Identity IdentityN
    If Less LessEqual Log LogSoftmax LogicalAnd LogicalNot LogicalOr MatMul Max Maximum Mean
    Min Minimum Mod Mul Neg NoOp NotEqual OneHot OnesLike Pack Pad PadV2 PartitionedCall
    Placeholder Pow Prod RandomStandardNormal RandomUniform RandomUniformInt Range Rank
    ReadVariableOp RealDiv Reciprocal Relu Relu6 Reshape ResourceGather ReverseSequence ReverseV2
    Round Rsqrt Select SelectV2 Selu Shape ShapeN ShardedFilename Sigmoid Sign Size Slice Snapshot
    Softmax Softplus Split SplitV Sqrt Square SquaredDifference Squeeze StatefulPartitionedCall
    StatelessIf StatelessRandomGetKeyCounter StatelessRandomUniformV2 StatelessWhile
    StaticRegexFullMatch StopGradient StridedSlice StringJoin Sub Sum Tanh TensorListElementShape
    TensorListFromTensor TensorListGetItem TensorListLength TensorListReserve TensorListSetItem
    TensorListStack Tile Transpose Unique UniqueV2 Unpack VarHandleOp Where While ZerosLike
    """.split())
_SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints"})
_SIGNATURE = "serving_default"
_OUTPUT = "representations"


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


def check_saved_model(path: str) -> None:
  """Checks that ``path`` is a biLM SavedModel of this package, reading no code or weights.

  Raises:
    FileNotFoundError: ``path`` is not a directory.
    ValueError: an op outside ``ALLOWED_OPS`` (named), no (readable) ``saved_model.pb``,
      no ``serving_default``
      signature with one int32 input ``char_ids`` [batch, time, chars] (3 <=
      chars <= MAX_CHARACTERS_PER_TOKEN) or ``token_ids`` [batch, time] and a
      ``representations`` output, no Keras metadata, or a layer class other
      than this package's (e.g. ``Lambda``). The message names the folder.
  """
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no SavedModel directory at {path}.")
  ours = (f"a biLM SavedModel of this package (export_saved_model) has a {_SIGNATURE!r} "
          "signature with one int32 input, char_ids [batch, time, max_chars] or token_ids "
          f"[batch, time], and a {_OUTPUT!r} output")
  # Imported here: protobuf modules TensorFlow and tf_keras ship, needed only to read.
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
  from tf_keras.protobuf import saved_metadata_pb2  # pylint: disable=import-outside-toplevel
  graph_file = os.path.join(path, "saved_model.pb")
  if not os.path.isfile(graph_file):
    raise ValueError(f"{path} holds no saved_model.pb, so it is not a SavedModel; {ours}. Pass "
                     "the saved_model folder of a run folder.")
  saved_model = saved_model_pb2.SavedModel()
  try:
    with open(graph_file, "rb") as f:
      saved_model.ParseFromString(f.read())
  except protobuf_message.DecodeError as e:
    raise ValueError(f"{graph_file} is not a readable SavedModel ({e}); it is truncated or "
                     "corrupt. Export the model again.") from e
  if saved_model.meta_graphs:
    _check_ops(path, saved_model.meta_graphs[0])
  signatures = saved_model.meta_graphs[0].signature_def if saved_model.meta_graphs else {}
  if _SIGNATURE not in signatures:
    raise ValueError(f"{path} has no {_SIGNATURE!r} signature (it has "
                     f"{sorted(signatures) or 'none'}); {ours}.")
  signature = signatures[_SIGNATURE]
  inputs = {name: (tf.dtypes.as_dtype(t.dtype).name, [d.size for d in t.tensor_shape.dim])
            for name, t in signature.inputs.items()}
  name, (dtype, shape) = next(iter(inputs.items())) if len(inputs) == 1 else ("", ("", []))
  rank = {"char_ids": 3, "token_ids": 2}.get(name)
  if (dtype != "int32" or len(shape) != rank or _OUTPUT not in signature.outputs or
      (rank == 3 and not 3 <= shape[2] <= MAX_CHARACTERS_PER_TOKEN)):
    raise ValueError(f"{path}: the {_SIGNATURE!r} signature takes {inputs} and returns "
                     f"{sorted(signature.outputs)}; {ours} (at most {MAX_CHARACTERS_PER_TOKEN} "
                     "chars). It is not a biLM export of this package.")
  metadata_file = os.path.join(path, "keras_metadata.pb")
  if not os.path.isfile(metadata_file):
    raise ValueError(f"{path} holds no keras_metadata.pb (the Keras model config), so it is not "
                     "a Keras SavedModel of this package; export it with export_saved_model. "
                     "To only run its signature, use tf.saved_model.load.")
  metadata = saved_metadata_pb2.SavedMetadata()
  try:
    with open(metadata_file, "rb") as f:
      metadata.ParseFromString(f.read())
    classes = {json.loads(node.metadata).get("class_name") for node in metadata.nodes}
  except (protobuf_message.DecodeError, ValueError, AttributeError) as e:
    raise ValueError(f"{metadata_file} is not readable Keras metadata ({e}); it is truncated or "
                     "corrupt. Export the model again.") from e
  foreign = sorted(str(c) for c in classes - KERAS_CLASSES)
  if foreign:
    raise ValueError(
        f"{path} holds layer classes {foreign} that a biLM of this package never has "
        f"({', '.join(sorted(KERAS_CLASSES))}); it is refused unread, since loading a Lambda "
        "layer or a foreign class can run code stored in the file. Use a SavedModel written by "
        "export_saved_model.")


def _called_functions(nodes) -> set:
  """Names of the graph functions that ``nodes`` call (``f``, While bodies, If branches...)."""
  names = set()
  for node in nodes:
    for value in node.attr.values():
      if value.func.name:
        names.add(value.func.name)
      names.update(f.name for f in value.list.func)
  return names


def _check_ops(path: str, meta_graph) -> None:
  """Refuses a SavedModel holding an op outside ``ALLOWED_OPS`` (saver ops: saver only).

  Every function of the graph library is checked, called or not: loading a
  SavedModel makes each one callable. The checkpoint ops are allowed only in
  the functions that the SavedModel's saver nodes call and that no other code
  of the graph reaches.
  """
  functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}

  def reach(roots) -> set:
    seen, todo = set(), [r for r in roots if r in functions]
    while todo:
      name = todo.pop()
      if name not in seen:
        seen.add(name)
        todo += [c for c in _called_functions(functions[name].node_def) if c in functions]
    return seen

  saver_def = meta_graph.saver_def
  saver_nodes = {n.lstrip("^").split(":")[0]
                 for n in (saver_def.save_tensor_name, saver_def.restore_op_name) if n}
  top = meta_graph.graph_def.node
  saver_only = reach(_called_functions(n for n in top if n.name in saver_nodes))
  other = reach(_called_functions(n for n in top if n.name not in saver_nodes)
                | (set(functions) - saver_only))
  found = [(n.op, "the top-level graph") for n in top]
  for name in sorted(set(functions)):
    found += [(n.op, f"function {name}") for n in functions[name].node_def]
  for op, where in found:
    saver_function = where.startswith("function ") and where[9:] in saver_only - other
    if op in ALLOWED_OPS or (op in _SAVER_OPS and saver_function):
      continue
    raise ValueError(
        f"{path} holds the TensorFlow op {op!r} (in {where}), which a biLM SavedModel of this "
        "package never holds; it is refused unloaded, since running a foreign op can read or "
        "write files or run code. Use a SavedModel written by export_saved_model (or the "
        "variant's TFLite file).")


def _keras_safe_mode():
  """tf_keras's safe mode for the legacy SavedModel loader, which ignores ``safe_mode=``.

  In safe mode a Lambda layer's stored bytecode is never turned into a
  function. The scope is not public API: if tf_keras moves it, ``check_saved_model``'s
  class list still keeps such layers out.
  """
  try:
    from tf_keras.src.saving import serialization_lib  # pylint: disable=import-outside-toplevel
  except ImportError:
    return contextlib.nullcontext()
  return serialization_lib.SafeModeScope(True)


def load_saved_model(path: str) -> keras.Model:
  """Loads a biLM SavedModel of ``export_saved_model`` (checked first, no code run).

  Raises:
    FileNotFoundError, ValueError: see ``check_saved_model``.
  """
  check_saved_model(path)
  with _keras_safe_mode():
    return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False,
                                   safe_mode=True)
