"""``cluster``: weight sharing, k values per matrix.

``method.py``: its options and method; ``clustering.py``: 1-D k-means of a matrix (zeros
kept) and the callback that keeps the values shared while fine-tuning.
"""

from prunelm_tf.compression.methods.cluster.method import ClusterMethod, ClusterOptions
