"""``retrain``: tfmot pruning on a schedule while retraining.

``method.py``: its options and method; ``pruning.py``: tfmot's schedule, the wrappers
(ramped masks, and the fixed masks the ``finetune`` stage keeps) and stripping them.
"""

from prunelm_tf.compression.methods.retrain.method import RetrainMethod, RetrainOptions
