"""Evaluation of biLM variants: perplexity (Keras and LM TFLite), SST-2 probe, latency, sizes."""

from prunelm_tf.evaluation.downstream import (ProbeConfig, evaluate_sst2, pooled_features,
                                              read_sentence_labels, train_probe, train_subset)
from prunelm_tf.evaluation.latency import (LatencyConfig, latency_input, measure_latency,
                                           measure_variant)
from prunelm_tf.evaluation.perplexity import (convert_lm_to_tflite, export_lm_tflite,
                                              lm_serving_function, tflite_perplexity)
