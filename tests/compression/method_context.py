"""A `MethodContext` on the tiny model: how the unit tests call a method, without a run.

``compress`` (the end-to-end run) also exports, measures and evaluates every variant; a
unit test of what a method makes calls the method itself on this context instead.
"""

from typing import Optional, Sequence, Tuple

from prunelm_tf.compression.methods import MethodContext
from prunelm_tf.compression.source import Source
from prunelm_tf.compression.shared.targets import (overridden_names, prunable_weights,
                                                   resolve_targets)
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.training.run_folder import load_run


def tiny_source(run_dir: str) -> Source:
  """The tiny trained run as a compression source (a fresh model each call)."""
  model, config, vocab = load_run(run_dir)
  return Source(model, config, vocab, "the tiny model")


def method_context(source: Source, folder, *, target: float = 0.0, train: Optional[str] = None,
                   calibration: Optional[str] = None, valid: Optional[str] = None,
                   max_sentences: int = 0, teacher=None, seed: int = 0,
                   layer_sparsity: Sequence[Tuple[str, float]] = ()) -> MethodContext:
  """A context for one variant of ``source`` at ``target``; corpora are file paths.

  ``folder`` (a pytest tmp_path) holds the variant's checkpoints, TensorBoard and caches.
  ``layer_sparsity`` (``--layer_sparsity``) sets the targets of the weights it names and
  leaves them out of the free weights, as compress() does.
  """
  names = list(prunable_weights(source.model))
  fixed = set(overridden_names(names, layer_sparsity))

  def read(path, what):
    return load_corpus(path, max_sentences, what=what) if path else None
  return MethodContext(
      source=source, target_sparsity=target,
      targets=resolve_targets(names, target, layer_sparsity),
      free_weights=[n for n in names if n not in fixed], train_sentences=read(train, "--train"),
      calibration_sentences=read(calibration, "--calibration"),
      variant_dir=str(folder / "variant"), tensorboard_dir=str(folder / "tensorboard"),
      cache_dir=str(folder / "cache"), seed=seed,
      make_dataset=lambda s, b, shuffle, seed=0: source.dataset(s, b, shuffle=shuffle,
                                                                seed=seed),
      teacher=teacher, valid_sentences=read(valid, "--valid"))
