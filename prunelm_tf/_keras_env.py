"""Selects Keras 2 (tf_keras) before TensorFlow is imported anywhere.

tfmot 0.8 only understands Keras 2 models; TensorFlow 2.21 defaults to Keras 3
unless ``TF_USE_LEGACY_KERAS=1`` is set *before* its first import, and then
models silently become Keras 3 objects that tfmot rejects. This is the only
place the variable is set; every module of the package imports TensorFlow
after ``prunelm_tf/__init__.py`` has imported this module.
"""

import os
import sys

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
  raise ImportError(
      "TensorFlow was imported before prunelm_tf with TF_USE_LEGACY_KERAS unset, "
      "so tf.keras is Keras 3 and tfmot cannot prune it. Import prunelm_tf "
      "first, or export TF_USE_LEGACY_KERAS=1 before starting Python.")
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Quieter TF C++ logs unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # pipelines sets 3 unless verbose
