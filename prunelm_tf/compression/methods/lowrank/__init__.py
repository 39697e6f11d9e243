"""``lowrank``: chosen matrices replaced by two low-rank factors.

``method.py``: its options and method; ``factorization.py``: the factors of one matrix
(plain or data-aware SVD) and the ranks for a budget.
"""

from prunelm_tf.compression.methods.lowrank.method import LowRankMethod, LowRankOptions
