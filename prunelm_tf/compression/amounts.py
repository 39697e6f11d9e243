"""What a method's amount of compression means: one name per meaning.

Every registered method declares its ``amount`` (`methods.base.CompressionMethod`): one
of `AMOUNTS`, or None for a stage that removes nothing (``finetune``). The amount's name is
its name everywhere a user meets it: the command-line flag (``--<name>_sweep``), the
recipe listing (``obs sparsity 0.9``), ``metrics.json`` (``"amount": {"name", "value"}``)
and ``summary.md``. Inside the library the values travel as ``CompressConfig.sparsity_sweep``
and ``MethodContext.target_sparsity`` (the names recorded run folders and benchmarks read),
whatever their meaning; a recipe stage's ``amount`` holds them in its method's meaning.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Amount:
  """One meaning of the amount of compression."""

  # Its name, e.g. "sparsity": the flag is --<name>_sweep, metrics.json's amount.name.
  name: str
  # One line: the fraction of what is removed.
  meaning: str

  @property
  def flag(self) -> str:
    """The command-line flag that takes this amount (a list: one variant per value)."""
    return f"{self.name}_sweep"


SPARSITY = Amount("sparsity", "the fraction of the compressed matrices' weights set to zero")
PARAMS_REMOVED = Amount("params_removed", "the fraction of the compressed matrices' "
                        "parameters removed: the model gets physically smaller")
LAYERS_REMOVED = Amount("layers_removed", "the fraction of the LSTM layers removed "
                        "(round(value x layers) of them, half up)")
BITS_REMOVED = Amount("bits_removed", "the fraction of the 8 int8 bits per weight removed "
                      "(0.5 = 4 bits = 16 values per matrix)")
# Every meaning; a method's amount is one of these.
AMOUNTS: Tuple[Amount, ...] = (SPARSITY, PARAMS_REMOVED, LAYERS_REMOVED, BITS_REMOVED)
# tfmot's name for a one-value --sparsity_sweep.
FINAL_SPARSITY = "final_sparsity"


def amount_flag(amount: Optional[Amount]) -> str:
  """``--sparsity_sweep`` (``--final_sparsity``) etc., for messages; "no amount" for None."""
  if amount is None:
    return "no amount"
  return f"--{amount.flag}" + (f" (--{FINAL_SPARSITY})" if amount == SPARSITY else "")


def amount_record(amount: Optional[Amount], value: float) -> Optional[dict]:
  """A variant's ``amount`` in metrics.json: ``{"name": ..., "value": ...}``, None without one."""
  return None if amount is None else {"name": amount.name, "value": float(value)}
