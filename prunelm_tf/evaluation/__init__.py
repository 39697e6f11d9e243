"""Evaluation of biLM variants: perplexity (Keras and LM TFLite), SST-2, MRPC and CoNLL-2003
NER on frozen features, latency, sizes."""

from prunelm_tf.evaluation.conll import conll_f1, read_conll
from prunelm_tf.evaluation.downstream import (ProbeConfig, evaluate_sst2, pooled_features,
                                              read_sentence_labels, train_probe, train_subset)
from prunelm_tf.evaluation.feature_cache import fingerprint_file, fingerprint_weights
from prunelm_tf.evaluation.latency import (LatencyConfig, latency_input, measure_latency,
                                           measure_variant)
from prunelm_tf.evaluation.mrpc import evaluate_mrpc, read_mrpc, tokenize, train_pair_probe
from prunelm_tf.evaluation.ner import (NerConfig, TokenFeatures, evaluate_ner, ner_f1_spread,
                                       token_features, train_tagger)
from prunelm_tf.evaluation.perplexity import (convert_lm_to_tflite, export_lm_tflite,
                                              lm_serving_function, tflite_perplexity)
