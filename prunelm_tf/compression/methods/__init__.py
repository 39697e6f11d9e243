"""Compression methods: the registry (the one list of methods), their interface, one folder each.

  from prunelm_tf.compression.methods import REGISTRY
"""

from prunelm_tf.compression.methods.base import (CompressedModel, CompressionMethod,
                                                 MethodContext, Needs)
from prunelm_tf.compression.methods.registry import REGISTRY, get_method, registered
