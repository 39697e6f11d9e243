"""ELMo options.json <-> BiLMConfig."""

import json

import pytest

from prunelm_tf.elmo import options as options_lib
from prunelm_tf.models import BiLMConfig, CharCNNConfig


def _fixture_options(fixture):
  return json.loads(fixture.options.read_text())


def _write(tmp_path, options, name="options.json"):
  path = tmp_path / name
  path.write_text(json.dumps(options) if not isinstance(options, str) else options)
  return str(path)


def test_fixture_options_give_the_fixture_architecture(any_fixture):
  config = options_lib.load_options(any_fixture.options)
  assert config.vocab_size == 0 and not config.has_softmax
  assert config.token_encoder == "char"
  assert (config.lstm_dim, config.projection_dim, config.n_layers) == (64, 16, 2)
  assert (config.cell_clip, config.proj_clip) == (3, 3)
  assert config.use_skip_connections == (any_fixture.name == "elmo_fixture")
  assert config.char_cnn == CharCNNConfig(
      embedding_dim=4, filters=((1, 4), (2, 8), (3, 16), (4, 32), (5, 64)), n_highway=2,
      n_characters=262, max_characters_per_token=50, activation="relu")


def test_config_to_options_reproduces_the_fixture_file(any_fixture):
  config = options_lib.load_options(any_fixture.options)
  assert options_lib.config_to_options(config) == _fixture_options(any_fixture)


def test_options_round_trip_without_clipping_with_tanh_and_no_highway():
  config = BiLMConfig(vocab_size=0, lstm_dim=32, projection_dim=8, n_layers=3, cell_clip=None,
                      proj_clip=None, use_skip_connections=False,
                      char_cnn=CharCNNConfig(embedding_dim=4, filters=((1, 8), (3, 8)),
                                             n_highway=0, n_characters=261, activation="tanh"))
  options = options_lib.config_to_options(config)
  assert "cell_clip" not in options["lstm"] and "proj_clip" not in options["lstm"]
  assert options_lib.options_to_config(options) == config


def test_training_only_keys_are_ignored(elmo_fixture, tmp_path):
  options = _fixture_options(elmo_fixture)
  options.update(bidirectional=True, n_tokens_vocab=793471, dropout=0.3, all_clip_norm_val=10.0,
                 n_epochs=10, batch_size=128, unroll_steps=20, n_negative_samples_batch=8192,
                 n_train_tokens=768648884)
  config = options_lib.load_options(_write(tmp_path, options))
  assert config == options_lib.load_options(elmo_fixture.options)
  assert config.dropout == BiLMConfig().dropout


@pytest.mark.parametrize("n_characters", [261, 262])
def test_n_characters_261_and_262_are_accepted(elmo_fixture, tmp_path, n_characters):
  options = _fixture_options(elmo_fixture)
  options["char_cnn"]["n_characters"] = n_characters
  assert options_lib.load_options(_write(tmp_path, options)).char_cnn.n_characters == n_characters


def test_absent_or_null_clipping_means_none_and_defaults_follow_bilm_tf(elmo_fixture, tmp_path):
  options = _fixture_options(elmo_fixture)
  del options["lstm"]["cell_clip"]
  options["lstm"]["proj_clip"] = None
  del options["lstm"]["n_layers"]  # bilm-tf: 1
  del options["char_cnn"]["n_highway"]  # bilm-tf: no highway
  config = options_lib.load_options(_write(tmp_path, options))
  assert (config.cell_clip, config.proj_clip) == (None, None)
  assert config.n_layers == 1 and config.char_cnn.n_highway == 0


@pytest.mark.parametrize("section,key", [
    ("lstm", "dim"), ("lstm", "projection_dim"), ("lstm", "use_skip_connections"),
    ("char_cnn", "filters"), ("char_cnn", "embedding"), ("char_cnn", "n_characters"),
    ("char_cnn", "max_characters_per_token"), ("char_cnn", "activation"), (None, "lstm"),
    (None, "char_cnn")])
def test_missing_required_key_names_file_and_key(elmo_fixture, tmp_path, section, key):
  options = _fixture_options(elmo_fixture)
  del (options[section] if section else options)[key]
  path = _write(tmp_path, options)
  expected = f"{section}.{key}" if section else key
  with pytest.raises(ValueError, match=f"{path}.*required key '{expected}'"):
    options_lib.load_options(path)


def test_missing_embedding_dim_is_named(elmo_fixture, tmp_path):
  options = _fixture_options(elmo_fixture)
  options["char_cnn"]["embedding"] = {}
  with pytest.raises(ValueError, match="char_cnn.embedding.dim"):
    options_lib.load_options(_write(tmp_path, options))


@pytest.mark.parametrize("section,key,value,message", [
    ("lstm", "dim", "64", "lstm.dim must be an integer"),
    ("lstm", "n_layers", True, "lstm.n_layers must be an integer"),
    ("lstm", "n_layers", 0, "lstm.n_layers must be an integer >= 1"),
    ("lstm", "cell_clip", -1, "lstm.cell_clip must be a number > 0"),
    ("lstm", "use_skip_connections", 1, "use_skip_connections must be true or false"),
    ("lstm", "projection_dim", 64, "projection_dim=64 must be smaller than lstm.dim=64"),
    ("char_cnn", "filters", [[1, 4], [2]], "char_cnn.filters must be a non-empty list"),
    ("char_cnn", "filters", [], "char_cnn.filters must be a non-empty list"),
    ("char_cnn", "activation", "sigmoid", "activation must be one of"),
    ("char_cnn", "n_characters", 300, "n_characters must be 261 or 262"),
])
def test_bad_values_are_rejected_naming_the_file(elmo_fixture, tmp_path, section, key, value,
                                                 message):
  options = _fixture_options(elmo_fixture)
  options[section][key] = value
  path = _write(tmp_path, options)
  with pytest.raises(ValueError, match=message) as e:
    options_lib.load_options(path)
  assert path in str(e.value)


def test_unidirectional_models_are_rejected(elmo_fixture, tmp_path):
  options = _fixture_options(elmo_fixture)
  options["bidirectional"] = False
  with pytest.raises(ValueError, match="only bidirectional"):
    options_lib.load_options(_write(tmp_path, options))


@pytest.mark.parametrize("text", ['{"lstm": {"dim": 64,', "", "not json", '{"lstm": 1}', "[1, 2]"])
def test_malformed_json_names_the_file(tmp_path, text):
  path = _write(tmp_path, text)
  with pytest.raises(ValueError, match=path):
    options_lib.load_options(path)


def test_missing_options_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.json"):
    options_lib.load_options(tmp_path / "missing.json")


def test_word_input_configs_have_no_elmo_options():
  with pytest.raises(ValueError, match="char-input models only"):
    options_lib.config_to_options(BiLMConfig(vocab_size=10, token_encoder="word"))

