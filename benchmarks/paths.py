"""Where the benchmarks read their data: ``../shared/data`` beside the project root (read-only)."""

import os

SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                            "data"))
PTB = os.path.join(SHARED_DATA, "ptb")
PTB_TRAIN, PTB_VALID, PTB_TEST = (os.path.join(PTB, f"ptb.{split}.txt")
                                  for split in ("train", "valid", "test"))
CONLL2003 = os.path.join(SHARED_DATA, "conll2003")
