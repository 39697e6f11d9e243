"""benchmarks.ptb_sweep: every group of the word-model sweep records PTB valid beside test."""

import os

from benchmarks import ptb_sweep


def test_every_group_records_valid_and_reports_test():
  for settings in (ptb_sweep.FULL, ptb_sweep.QUICK):
    for group, config in ptb_sweep.compression_configs("some/model", settings).items():
      assert os.path.basename(config.eval) == "ptb.test.txt", group
      assert os.path.basename(config.valid) == "ptb.valid.txt", group
      assert config.calibration in ("", config.valid), group  # never the test split
