"""The registry: the one mapping from method name to method.

Adding a method: write its folder in this package (``<name>/method.py`` and its
algorithm beside it; see ``base.py``) and add one line below. Flags, validation,
reports, HParams and evaluation read this mapping; no other file lists method names.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator

from prunelm_tf.compression.methods.base import CompressionMethod
from prunelm_tf.compression.methods.cluster import ClusterMethod
from prunelm_tf.compression.methods.finetune import FinetuneMethod
from prunelm_tf.compression.methods.layers import LayersMethod
from prunelm_tf.compression.methods.lowrank import LowRankMethod
from prunelm_tf.compression.methods.obs import ObsMethod
from prunelm_tf.compression.methods.retrain import RetrainMethod
from prunelm_tf.compression.methods.structured import StructuredMethod
from prunelm_tf.compression.methods.threshold import ThresholdMethod
from prunelm_tf.compression.methods.wanda import WandaMethod

REGISTRY: Dict[str, CompressionMethod] = {m.name: m for m in (
    ThresholdMethod(),
    WandaMethod(),
    ObsMethod(),
    RetrainMethod(),
    FinetuneMethod(),
    LowRankMethod(),
    StructuredMethod(),
    LayersMethod(),
    ClusterMethod(),
)}


def get_method(name: str) -> CompressionMethod:
  """The registered method ``name``.

  Raises:
    ValueError: no such method; the message lists the registered ones.
  """
  if name not in REGISTRY:
    raise ValueError(f"--method={name!r} is not a compression method; choose from "
                     f"{', '.join(sorted(REGISTRY))}.")
  return REGISTRY[name]


@contextlib.contextmanager
def registered(method: CompressionMethod) -> Iterator[CompressionMethod]:
  """Registers ``method`` for the duration of a ``with`` block (tests, plug-ins)."""
  if method.name in REGISTRY:
    raise ValueError(f"a method named {method.name!r} is already registered.")
  REGISTRY[method.name] = method
  try:
    yield method
  finally:
    del REGISTRY[method.name]
