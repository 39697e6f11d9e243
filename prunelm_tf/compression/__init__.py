"""Compression of biLMs: registered methods (``methods.REGISTRY``), one pipeline (``compress``)."""

from prunelm_tf.compression.config import CompressConfig, parse_layer_sparsity
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression.methods.retrain.pruning import ScheduleConfig
from prunelm_tf.compression.pipeline import compress
from prunelm_tf.compression.shared.finetune import RetrainConfig
from prunelm_tf.compression.shared.targets import (measure_sparsity, prunable_weights,
                                                   resolve_targets)
from prunelm_tf.compression.shared.threshold import prune_by_threshold
