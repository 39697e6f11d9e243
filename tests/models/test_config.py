"""BiLMConfig: types, the size rule of configs read from files, parameter count."""

import dataclasses
import math

import pytest

from prunelm_tf.models import BiLMConfig, CharCNNConfig, build_bilm
from prunelm_tf.models import config as config_lib

TINY_CHAR = CharCNNConfig(embedding_dim=4, filters=((1, 4), (2, 4)), n_highway=1)

# ELMo "Original" (5.5B has the same geometry): its published size is 93.6M parameters.
ELMO_ORIGINAL = BiLMConfig(
    vocab_size=0, token_encoder="char", lstm_dim=4096, projection_dim=512, n_layers=2,
    char_cnn=CharCNNConfig(embedding_dim=16, filters=((1, 32), (2, 32), (3, 64), (4, 128),
                                                      (5, 256), (6, 512), (7, 1024)),
                           n_highway=2, n_characters=262, max_characters_per_token=50))


def tiny(**kw):
  base = dict(vocab_size=12, token_encoder="word", lstm_dim=8, projection_dim=4, n_layers=2,
              dropout=0.0, char_cnn=TINY_CHAR)
  base.update(kw)
  return BiLMConfig(**base)


# --- parameter count without building ----------------------------------------


@pytest.mark.parametrize("kw", [
    dict(), dict(token_encoder="char"), dict(token_encoder="char", vocab_size=0),
    dict(token_encoder="char", n_layers=1,
         char_cnn=dataclasses.replace(TINY_CHAR, n_characters=261, n_highway=0))])
def test_num_parameters_equals_the_built_model(kw):
  config = tiny(**kw)
  model = build_bilm(config)
  assert config_lib.num_parameters(config) == model.count_params()
  built = {w.name.split(":")[0] for w in model.weights}
  assert {name for name, _, _ in config_lib.weight_shapes(config)} <= built
  assert len(config_lib.weight_shapes(config)) == len(model.weights)
  assert sum(config_lib._num_weight_tensors(config).values()) == len(model.weights)


def test_elmo_original_has_its_published_size_and_passes_the_rule():
  assert config_lib.num_parameters(ELMO_ORIGINAL) == 93_600_848
  config_lib.check_size(ELMO_ORIGINAL, source="options.json")


# --- the size rule --------------------------------------------------------------


def test_absurd_lstm_dim_is_refused_naming_the_field_and_the_limit():
  config = dataclasses.replace(ELMO_ORIGINAL, lstm_dim=10**9)  # constructing allocates nothing
  with pytest.raises(ValueError) as e:
    config_lib.check_size(config, source="run/config.json", field_name=lambda f: "model." + f)
  message = str(e.value)
  assert message.startswith("run/config.json: ")
  assert "model.projection_dim=512, model.lstm_dim=1000000000" in message
  assert "forward_lstm_0/kernel (1024, 4000000000)" in message
  assert f"at most {config_lib.MAX_PARAMETERS:,} parameters" in message


def test_parameter_limit_boundary():
  n = config_lib.num_parameters(ELMO_ORIGINAL)
  config_lib.check_size(ELMO_ORIGINAL, max_parameters=n)
  with pytest.raises(ValueError, match=f"{n:,} parameters"):
    config_lib.check_size(ELMO_ORIGINAL, max_parameters=n - 1)


def test_weight_tensor_limit_boundary_names_the_multiplying_field():
  deep = tiny(n_layers=10**9)  # enumerating its layers would hang: counted arithmetically
  with pytest.raises(ValueError, match="n_layers=1000000000 gives a model of 6,000,000,003 weight"):
    config_lib.check_size(deep)
  n = len(config_lib.weight_shapes(tiny()))
  config_lib.check_size(tiny(), max_weight_tensors=n)
  with pytest.raises(ValueError, match="weight tensors"):
    config_lib.check_size(tiny(), max_weight_tensors=n - 1)


def test_highway_count_is_named_with_the_file_key():
  config = tiny(token_encoder="char", char_cnn=dataclasses.replace(TINY_CHAR, n_highway=10**6))
  with pytest.raises(ValueError, match="char_cnn.n_highway=1000000 gives"):
    config_lib.check_size(config)


def test_characters_per_token_limit_boundary():
  limit = config_lib.MAX_CHARACTERS_PER_TOKEN
  ok = tiny(token_encoder="char",
            char_cnn=dataclasses.replace(TINY_CHAR, max_characters_per_token=limit))
  config_lib.check_size(ok)
  too_long = dataclasses.replace(
      ok, char_cnn=dataclasses.replace(TINY_CHAR, max_characters_per_token=limit + 1))
  with pytest.raises(ValueError, match=f"max_characters_per_token={limit + 1} exceeds the limit"):
    config_lib.check_size(too_long, source="x.json")


def test_in_memory_construction_is_not_size_checked():
  # Only configs read from files are; a caller may build what it likes.
  assert dataclasses.replace(ELMO_ORIGINAL, lstm_dim=10**9).lstm_dim == 10**9


def test_limits_leave_room_for_a_full_1b_word_benchmark_softmax():
  big = BiLMConfig(vocab_size=793_471, token_encoder="word", lstm_dim=4096, projection_dim=512,
                   n_layers=2)
  assert math.isclose(config_lib.num_parameters(big), 888e6, rel_tol=0.01)
  config_lib.check_size(big)


# --- types ---------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("lstm_dim", "512"), ("lstm_dim", 8.0), ("n_layers", True), ("vocab_size", None),
    ("projection_dim", [4]), ("cell_clip", "3"), ("dropout", "0.1"),
    ("use_skip_connections", 1), ("char_cnn", [1, 2])])
def test_wrong_types_raise_type_error_naming_the_field(field, value):
  with pytest.raises(TypeError, match=field):
    tiny(**{field: value})


@pytest.mark.parametrize("field,value", [("cell_clip", float("nan")), ("proj_clip", float("inf")),
                                         ("dropout", float("nan"))])
def test_non_finite_numbers_are_refused(field, value):
  with pytest.raises(ValueError, match=field):
    tiny(**{field: value})


@pytest.mark.parametrize("kw", [
    dict(filters=5), dict(filters="1:4"), dict(filters=((1, "4"),)), dict(filters=((1, 4.5),)),
    dict(filters=((1, 2, 3),)), dict(embedding_dim=4.0), dict(n_highway=None),
    dict(max_characters_per_token="50")])
def test_char_cnn_wrong_types_raise_type_error(kw):
  with pytest.raises(TypeError, match="char_cnn"):
    dataclasses.replace(TINY_CHAR, **kw)


def test_filters_as_json_lists_and_numpy_ints_pass():
  np = pytest.importorskip("numpy")
  config = dataclasses.replace(TINY_CHAR, filters=[[1, np.int64(4)], [2, 4]])
  assert config.filters == ((1, 4), (2, 4))


def test_from_dict_names_the_file_and_section():
  d = tiny().to_dict()
  with pytest.raises(TypeError, match=r"^run/config.json: model.lstm_dim must be an integer"):
    BiLMConfig.from_dict({**d, "lstm_dim": "8"}, source="run/config.json", prefix="model.")
  with pytest.raises(ValueError, match=r"^run/config.json: unknown biLM config keys \['x'\]"):
    BiLMConfig.from_dict({**d, "x": 1}, source="run/config.json", prefix="model.")
  with pytest.raises(TypeError, match=r"^run/config.json: the biLM config model must be a JSON"):
    BiLMConfig.from_dict([1], source="run/config.json", prefix="model.")
  with pytest.raises(ValueError, match="unknown char_cnn config keys"):
    BiLMConfig.from_dict({**d, "char_cnn": {"bogus": 1}})
  with pytest.raises(ValueError, match=r"model.lstm_dim=1000000000"):
    BiLMConfig.from_dict({**d, "lstm_dim": 10**9}, source="c.json", prefix="model.")
  assert BiLMConfig.from_dict(d, source="c.json") == tiny()
