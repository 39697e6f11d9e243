"""``threshold``: magnitude pruning without retraining.

``method.py``: its options and method. The pruning itself (``shared.threshold``) is shared:
sensitivity allocation measures each matrix's cost with it.
"""

from prunelm_tf.compression.methods.threshold.method import ThresholdMethod, ThresholdOptions
