"""``retrain``: tfmot pruning while retraining, from the dense model or a one-shot method.

``method.py``: its options and method (stages, fixed masks); ``pruning.py``: tfmot's
schedule, the wrappers (ramped or fixed masks) and stripping them.
"""

from prunelm_tf.compression.methods.retrain.method import RetrainMethod, RetrainOptions
