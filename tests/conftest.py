"""Test configuration: Keras 2 for tfmot, paths to the shared data."""

import os
import pathlib

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before any TensorFlow import
import prunelm_tf  # noqa: E402,F401

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared data not found at {SHARED_DATA}")
  return SHARED_DATA
