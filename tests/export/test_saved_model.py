"""SavedModel export/reload, and SavedModels from elsewhere refused without running their code."""

import os

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.export import saved_model as saved_model_lib
from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm

keras = tf.keras


def _tiny(encoder):
  return BiLMConfig(vocab_size=6, token_encoder=encoder, lstm_dim=8, projection_dim=4, n_layers=1,
                    dropout=0.0, char_cnn=CharCNNConfig(embedding_dim=2, filters=((1, 4),),
                                                        n_highway=1, max_characters_per_token=5))


@pytest.mark.parametrize("encoder", ["word", "char"])
def test_export_reloads_with_equal_outputs(tmp_path, encoder):
  model = build_bilm(_tiny(encoder))
  path = saved_model_lib.export_saved_model(model, str(tmp_path / "saved_model"))
  loaded = saved_model_lib.load_saved_model(path)
  shape = (2, 4) if encoder == "word" else (2, 4, 5)
  ids = np.random.default_rng(0).integers(1, 6, size=shape).astype(np.int32)
  np.testing.assert_array_equal(loaded(ids)["representations"].numpy(),
                                model(ids)["representations"].numpy())


def _lambda_saved_model(path, canary):
  """A Keras SavedModel with our signature whose Lambda layer touches ``canary`` when run."""
  # The lambda's bytecode is what Keras stores; eval puts the canary path in its code.
  source = (f"lambda x: (__import__('pathlib').Path({str(canary)!r}).touch(), "
            "tf.cast(x, tf.float32)[:, None, :, None])[1]")
  touch = eval(source, {"tf": tf})  # pylint: disable=eval-used
  ids = keras.Input((None,), dtype=tf.int32, name="token_ids")
  model = keras.Model(ids, keras.layers.Lambda(touch, name="evil")(ids))
  serve = tf.function(lambda token_ids: {"representations": model(token_ids)},
                      input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")])
  model.save(str(path), save_format="tf",
             signatures={"serving_default": serve.get_concrete_function()})
  canary.unlink()  # building and saving ran the lambda
  return str(path)


def test_keras_model_file_with_a_lambda_layer_is_refused_unrun(tmp_path):
  canary = tmp_path / "code_ran"
  path = _lambda_saved_model(tmp_path / "lambda_model", canary)
  with pytest.raises(ValueError, match=rf"{path} holds layer classes \['Lambda'\] that a biLM"):
    saved_model_lib.load_saved_model(path)
  assert not canary.exists()


def test_safe_mode_alone_also_keeps_the_lambda_from_running(tmp_path, monkeypatch):
  canary = tmp_path / "code_ran"
  path = _lambda_saved_model(tmp_path / "lambda_model", canary)
  # Plain Keras loading of the legacy format runs the stored bytecode: the risk is real.
  keras.models.load_model(path, compile=False)
  assert canary.exists()
  canary.unlink()
  # With the class check switched off, tf_keras's safe mode still refuses the bytecode
  # (the layer is revived from its traced graph instead).
  monkeypatch.setattr(saved_model_lib, "KERAS_CLASSES",
                      saved_model_lib.KERAS_CLASSES | {"Lambda"})
  saved_model_lib.load_saved_model(path)
  assert not canary.exists()


class _Module(tf.Module):

  def __init__(self, spec):
    super().__init__()
    self.serve = tf.function(
        lambda ids: {"representations": tf.zeros([1, 2, 1, 4]) +
                     tf.reduce_sum(tf.cast(ids, tf.float32))}, input_signature=[spec])


@pytest.mark.parametrize("spec,message", [
    (tf.TensorSpec([None, None], tf.int32, name="token_ids"), "holds no keras_metadata.pb"),
    (tf.TensorSpec([None, None], tf.float32, name="token_ids"), "signature takes .*float32"),
    (tf.TensorSpec([None, None, 2000], tf.int32, name="char_ids"), "signature takes .*2000"),
    (tf.TensorSpec([None, None, 50], tf.int32, name="x"), r"signature takes \{'x'"),
])
def test_saved_models_from_elsewhere_are_refused(tmp_path, spec, message):
  module = _Module(spec)
  path = str(tmp_path / "foreign")
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  with pytest.raises(ValueError, match=message) as e:
    saved_model_lib.load_saved_model(path)
  assert path in str(e.value)


def test_saved_model_without_a_serving_signature_is_refused(tmp_path):
  module = _Module(tf.TensorSpec([None, None], tf.int32, name="token_ids"))
  path = str(tmp_path / "nosig")
  tf.saved_model.save(module, path, signatures={"other": module.serve})
  with pytest.raises(ValueError, match=r"has no 'serving_default' signature \(it has .*'other'\]"):
    saved_model_lib.load_saved_model(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("sm") / "saved_model")
  return saved_model_lib.export_saved_model(build_bilm(_tiny("word")), path)


@pytest.mark.parametrize("name,cut", [("saved_model.pb", 100), ("saved_model.pb", 0),
                                      ("keras_metadata.pb", 50), ("keras_metadata.pb", 3)])
def test_truncated_files_are_refused(exported, tmp_path, name, cut):
  import shutil  # pylint: disable=import-outside-toplevel
  path = str(tmp_path / "copy")
  shutil.copytree(exported, path)
  file = os.path.join(path, name)
  with open(file, "rb") as f:
    data = f.read()
  with open(file, "wb") as f:
    f.write(data[:cut])
  with pytest.raises(ValueError, match=path):
    saved_model_lib.load_saved_model(path)


def test_missing_or_empty_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="no SavedModel directory"):
    saved_model_lib.load_saved_model(str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="holds no saved_model.pb"):
    saved_model_lib.load_saved_model(str(tmp_path))
