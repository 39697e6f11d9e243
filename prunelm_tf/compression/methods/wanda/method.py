"""``wanda``: the |W|·‖x‖ criterion per output unit, no weight update (the cheap baseline).

Same calibration machinery and options as ``obs`` (block size and dampening
are unused) except ``--allocation=obs_sensitivity``, which measures what OBS
does to each matrix; Wanda (Sun et al. 2023) keeps per output unit the weights
with the largest |W_ij|·‖X_j‖.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

from prunelm_tf.compression.methods.obs import method as obs
from prunelm_tf.compression.options import option

ALLOCATIONS = tuple(a for a in obs.ALLOCATIONS if a != obs.OBS_SENSITIVITY)


@dataclasses.dataclass(frozen=True)
class WandaOptions(obs.ObsOptions):
  """``obs``'s options without the OBS-only allocation."""

  # "uniform" or "sensitivity" (see ObsOptions; obs_sensitivity measures what OBS does).
  allocation: str = option("uniform", obs.ALLOCATION_HELP, flag="allocation",
                           choices=ALLOCATIONS)
  # No allocation of wanda's measures curves up to --sensitivity_max_level.
  max_level_allocation: ClassVar[Optional[str]] = None
  method_name: ClassVar[str] = "wanda"


class WandaMethod(obs.ObsMethod):
  """|W|·‖x‖ pruning from calibration text."""

  name = "wanda"
  one_shot = True
  summary = "prune the smallest |W|*||x|| per output unit on --calibration text, no training"
  criterion = "wanda"
  Options = WandaOptions
  hparam_domains = {**obs.ObsMethod.hparam_domains, "allocation": ALLOCATIONS}
