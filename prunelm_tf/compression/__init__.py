"""Compression of biLMs: pruning with retraining (tfmot) and without (thresholding)."""

from prunelm_tf.compression.config import (CompressConfig, RetrainConfig, ScheduleConfig,
                                           parse_layer_sparsity)
from prunelm_tf.compression.pipeline import compress
from prunelm_tf.compression.targets import measure_sparsity, prunable_weights, resolve_targets
from prunelm_tf.compression.threshold import prune_by_threshold
