"""Paths of the two real ELMo fixtures (ELMO_FORMAT.md, data/README.md sections 5-6)."""

import json
import pathlib
from typing import List, NamedTuple

import pytest

from prunelm_tf.elmo.weights import load_elmo


class ElmoFixture(NamedTuple):
  name: str
  options: pathlib.Path
  weights: pathlib.Path
  # The 30 test sentences, as 3 batches of 10 token lists.
  batches: List[List[List[str]]]

  @property
  def sentences(self) -> List[List[str]]:
    return [s for batch in self.batches for s in batch]


def _fixture(shared_data, name) -> ElmoFixture:
  if name == "elmo_fixture":
    root, sentences = shared_data / "elmo_fixture", "sentences.json"
  else:
    root, sentences = shared_data / "bilm_tf_fixture" / "model", "lm_embeddings_sentences.json"
  batches = [[s.split() for s in batch]
             for batch in json.loads((root / sentences).read_text(encoding="utf-8"))]
  return ElmoFixture(name, root / "options.json", root / "lm_weights.hdf5", batches)


@pytest.fixture(scope="session")
def elmo_fixture(shared_data) -> ElmoFixture:
  """AllenNLP's fixture: 2 layers, skip connections."""
  return _fixture(shared_data, "elmo_fixture")


@pytest.fixture(scope="session", params=["elmo_fixture", "bilm_tf_fixture"])
def any_fixture(request, shared_data) -> ElmoFixture:
  """Both fixtures: with (AllenNLP) and without (bilm-tf) skip connections."""
  return _fixture(shared_data, request.param)


@pytest.fixture(scope="session")
def elmo_loaded(elmo_fixture):
  """``(model, config)`` of elmo_fixture, loaded once; tests must not change it."""
  return load_elmo(elmo_fixture.options, elmo_fixture.weights)
