"""Child process of ``export_tflite(..., "int8")``: SAVED_MODEL CALIBRATION_NPZ OUT MAX_TOKENS.

Kept in its own process so that a native crash of the full-integer quantizer
(as on WHILE loops, tensorflow/tensorflow#41305) is reported, not fatal. The
calibration inputs arrive checked and padded by the parent.
"""

import sys

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np

from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.export.tflite import convert_to_tflite


def main(argv):
  saved_model_dir, calibration, out, max_tokens = argv[1:5]
  with np.load(calibration, allow_pickle=False) as npz:  # never unpickle a file
    inputs = [npz[k] for k in npz.files]
  flatbuffer = convert_to_tflite(load_saved_model(saved_model_dir), "int8",
                                 representative_inputs=lambda: iter(inputs),
                                 max_tokens=int(max_tokens))
  with open(out, "wb") as f:
    f.write(flatbuffer)


if __name__ == "__main__":
  main(sys.argv)
