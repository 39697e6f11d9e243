"""``compress`` for tests of what a method makes: the dense entry is measured once per process.

Every compression run describes its input model first (SavedModel, TFLite,
perplexities, similarity): the same few seconds of tracing for every test on the
tiny model. Tests of a method's variants call this ``compress``, which passes the
earlier runs of this test process as ``reuse_dense`` (`pipelines.compress
--reuse_dense`): a run whose dense settings equal an earlier one's copies that
dense entry. Tests of the dense entry itself, and of the pipeline, call
`prunelm_tf.compression.compress`.
"""

import os

from prunelm_tf.compression import compress as _compress

_RUNS = []  # run folders of this process, in the order they were made


def compress(config, run_dir, **kwargs):
  donors = tuple(d for d in _RUNS if os.path.isfile(os.path.join(d, "config.json")))
  result = _compress(config, run_dir, reuse_dense=donors, **kwargs)
  _RUNS.append(run_dir)
  return result
