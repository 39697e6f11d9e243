"""``wanda``: the |W|·‖x‖ criterion per output unit, no weight update (the cheap baseline).

Same calibration machinery and options as ``obs`` (block size and dampening
are unused); Wanda (Sun et al. 2023) keeps per output unit the weights with
the largest |W_ij|·‖X_j‖.
"""

from __future__ import annotations

from prunelm_tf.compression.methods.obs import ObsMethod


class WandaMethod(ObsMethod):
  """|W|·‖x‖ pruning from calibration text."""

  name = "wanda"
  one_shot = True
  summary = "prune the smallest |W|*||x|| per output unit on --calibration text, no training"
  criterion = "wanda"
