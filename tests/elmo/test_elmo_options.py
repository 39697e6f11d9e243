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
    ("lstm", "cell_clip", -1, "lstm.cell_clip must be a finite number > 0"),
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



# --- fuzz: every key dropped or replaced --------------------------------------
#
# The fixture's options (a released file's exact layout) with one key dropped,
# or one value (a section, a leaf, a filter pair or one of its numbers)
# replaced by a wrong type, a non-finite, negative, zero or absurd value. Each
# case is either refused with ValueError/TypeError naming the file, or is a
# legitimate value that loads; nothing raises anything else or allocates.

_FIXTURE_OPTIONS = {
    "lstm": {"cell_clip": 3, "use_skip_connections": True, "n_layers": 2, "proj_clip": 3,
             "projection_dim": 16, "dim": 64},
    "char_cnn": {"embedding": {"dim": 4}, "filters": [[1, 4], [2, 8], [3, 16], [4, 32], [5, 64]],
                 "n_highway": 2, "n_characters": 262, "max_characters_per_token": 50,
                 "activation": "relu"},
}
_DROP = "<dropped>"
_FUZZ_VALUES = (_DROP, None, True, False, "64", "", 0, -1, 1, 2.5, float("nan"), float("inf"),
                10**9, 10**30, [], {}, [1, 2])


def _paths(obj, prefix=()):
  items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
  for key, value in items:
    yield prefix + (key,)
    yield from _paths(value, prefix + (key,))


def _legitimate(path, value) -> bool:
  """Whether the mutated file is still a valid architecture (the only ones that may load)."""
  leaf = path[-1]
  if leaf in ("cell_clip", "proj_clip"):  # a finite number > 0, or no clipping
    return value in (_DROP, None) or (not isinstance(value, bool) and
                                      isinstance(value, (int, float)) and 0 < value < float("inf"))
  if leaf == "use_skip_connections":
    return isinstance(value, bool)
  if leaf == "n_layers":  # 1 (bilm-tf's default when absent); 10**9 breaks the size rule
    return value in (_DROP, 1) and value is not True
  if leaf == "n_highway":
    return value in (_DROP, None, 0, 1) and not isinstance(value, bool)
  if path in (("lstm", "projection_dim"), ("char_cnn", "embedding", "dim")):
    return value == 1 and not isinstance(value, bool)
  if path[:2] == ("char_cnn", "filters") and len(path) >= 3:
    if len(path) == 3:  # a whole [width, count] pair
      return value in (_DROP, [1, 2])
    return value == 1 and not isinstance(value, bool)  # a width or a count
  return False


_FUZZ_CASES = [(path, value) for path in _paths(_FIXTURE_OPTIONS) for value in _FUZZ_VALUES]


def _fuzz_id(case):
  path, value = case
  return ".".join(map(str, path)) + "=" + (value if value is _DROP else repr(value)[:12])


def test_fuzz_case_count():
  # Reported in the issue: 30 paths x 17 mutations.
  assert len(_FUZZ_CASES) == 510
  assert sum(_legitimate(*c) for c in _FUZZ_CASES) == 42


@pytest.mark.parametrize("case", _FUZZ_CASES, ids=map(_fuzz_id, _FUZZ_CASES))
def test_fuzzed_options_are_refused_cleanly_or_legitimate(tmp_path, case):
  path, value = case
  options = json.loads(json.dumps(_FIXTURE_OPTIONS))
  parent = options
  for key in path[:-1]:
    parent = parent[key]
  if value is _DROP:
    del parent[path[-1]]
  else:
    parent[path[-1]] = value
  file = _write(tmp_path, options)
  if _legitimate(path, value):
    config = options_lib.load_options(file)
    assert options_lib.config_to_options(config)  # a usable architecture
  else:
    with pytest.raises((ValueError, TypeError)) as e:
      options_lib.load_options(file)
    assert file in str(e.value)


@pytest.mark.parametrize("text", ["null", "1", '"lstm"', "[]", "[" * 100_000, "1" * 5000])
def test_fuzzed_top_level_is_refused_naming_the_file(tmp_path, text):
  file = _write(tmp_path, text)
  with pytest.raises(ValueError, match=file):
    options_lib.load_options(file)


@pytest.mark.parametrize("section,key,value,message", [
    ("lstm", "dim", 10**9, "lstm.projection_dim=16, lstm.dim=1000000000 give a model of"),
    ("lstm", "n_layers", 10**9, "lstm.n_layers=1000000000 gives a model of 6,000,000,0"),
    ("char_cnn", "max_characters_per_token", 10**9,
     "char_cnn.max_characters_per_token=1000000000 exceeds the limit of 1024"),
    ("char_cnn", "n_highway", 10**6, "char_cnn.n_highway=1000000 gives"),
    ("char_cnn", "filters", [[1, 4], [2, 10**9]], r"char_cnn.filters \(total count 1000000004"),
    ("char_cnn", "embedding", {"dim": 10**9}, "char_cnn.embedding.dim=1000000000"),
])
def test_absurd_sizes_are_refused_naming_the_file_field(tmp_path, section, key, value, message):
  options = json.loads(json.dumps(_FIXTURE_OPTIONS))
  options[section][key] = value
  file = _write(tmp_path, options)
  with pytest.raises(ValueError, match=message) as e:
    options_lib.load_options(file)
  assert str(e.value).startswith(f"ELMo options file {file}: ")
  assert "docs/elmo_format.md" in str(e.value)


def test_absurd_options_fail_before_the_weight_file_is_touched(tmp_path):
  from prunelm_tf.elmo.weights import load_elmo  # pylint: disable=import-outside-toplevel
  options = json.loads(json.dumps(_FIXTURE_OPTIONS))
  options["lstm"]["dim"] = 10**9
  with pytest.raises(ValueError, match="lstm.dim=1000000000"):
    load_elmo(_write(tmp_path, options), tmp_path / "never_read.hdf5")


def test_size_rule_boundary_elmo_original_geometry_loads(tmp_path):
  options = {"lstm": {"dim": 4096, "projection_dim": 512, "n_layers": 2, "cell_clip": 3,
                      "proj_clip": 3, "use_skip_connections": True},
             "char_cnn": {"embedding": {"dim": 16}, "n_highway": 2, "n_characters": 262,
                          "max_characters_per_token": 50, "activation": "relu",
                          "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512],
                                      [7, 1024]]}}
  assert options_lib.load_options(_write(tmp_path, options)).lstm_dim == 4096
  options["char_cnn"]["max_characters_per_token"] = 1024  # the limit itself passes
  assert options_lib.load_options(_write(tmp_path, options)).char_cnn.max_characters_per_token \
      == 1024
