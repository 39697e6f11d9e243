"""PruneLM-TF: compress ELMo-style biLMs and measure what was lost and gained."""

from prunelm_tf import _keras_env  # noqa: F401  (must run before TensorFlow)

__version__ = "0.1.0"
