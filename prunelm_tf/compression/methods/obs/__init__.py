"""``obs``: layer-wise OBS (SparseGPT) reconstruction from --calibration text, no training.

``method.py``: its options and method. The layer-wise machinery it shares with ``wanda``
(inputs and Gram matrices of each matrix, pruning stage by stage, the per-matrix solvers) is
in ``compression.shared`` (``calibration``, ``layerwise``).
"""

from prunelm_tf.compression.methods.obs.method import ObsMethod, ObsOptions
