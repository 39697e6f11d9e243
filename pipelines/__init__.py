"""Thin absl entry points; the logic lives in prunelm_tf."""

from prunelm_tf import _keras_env  # noqa: F401  (Keras 2 before TensorFlow)
