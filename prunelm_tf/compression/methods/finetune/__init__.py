"""``finetune``: training after the compression stages, their zeros, shared values and shape kept.

``method.py``: its options, the detection of clustered matrices and the method; the training
loop is `prunelm_tf.compression.shared.finetune`, the fixed masks
`prunelm_tf.compression.methods.retrain.pruning`.
"""

from prunelm_tf.compression.methods.finetune.method import FinetuneMethod, FinetuneOptions
