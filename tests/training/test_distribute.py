"""TF_CONFIG: refused with a message naming it and the fix; no cluster means no strategy."""

import json

import pytest

from prunelm_tf.training import distribute


def _tf_config(workers, task):
  return json.dumps({"cluster": {"worker": workers}, "task": task})


@pytest.mark.parametrize("text, match", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ("[1, 2]", "TF_CONFIG must be a JSON object"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "needs cluster.worker"),
    (_tf_config([], {"type": "worker", "index": 0}), "needs cluster.worker"),
    (_tf_config(["localhost"], {"type": "worker", "index": 0}), "needs cluster.worker"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                 "task": {"type": "worker", "index": 0}}), "may only hold"),
    (_tf_config(["a:1", "b:1"], {"type": "worker", "index": 2}), "task must name one"),
    (_tf_config(["a:1", "b:1"], {"type": "worker", "index": True}), "task must name one"),
    (_tf_config(["a:1", "b:1"], {"type": "chief", "index": 0}), "task must name one"),
    (_tf_config(["a:1", "b:1"], None), "task must name one"),
])
def test_malformed_tf_config_is_refused_with_the_fix(text, match):
  with pytest.raises(ValueError, match=match) as e:
    distribute.strategy_from_environment({"TF_CONFIG": text})
  assert "unset it to train in one process" in str(e.value)


def test_boundary_task_index_is_accepted():
  parsed = distribute.parse_tf_config(_tf_config(["a:1", "b:1"], {"type": "worker", "index": 1}))
  assert parsed["task"]["index"] == 1


@pytest.mark.parametrize("environ", [
    {}, {"TF_CONFIG": ""}, {"TF_CONFIG": "  "},
    {"TF_CONFIG": _tf_config(["localhost:1"], {"type": "worker", "index": 0})},
])
def test_no_cluster_means_no_strategy(environ):
  assert distribute.strategy_from_environment(environ) is None
  assert distribute.num_replicas(None) == 1
