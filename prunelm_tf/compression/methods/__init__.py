"""Compression methods: the registry (the one list of methods) and their interface.

  from prunelm_tf.compression.methods import REGISTRY
"""

from prunelm_tf.compression.methods.base import (CompressedModel, CompressionMethod,
                                                 MethodContext, Needs)
from prunelm_tf.compression.methods.registry import REGISTRY, get_method, registered
