"""Child process of ``export_tflite(..., "int8")``: SAVED_MODEL CALIBRATION_NPZ OUT.

Kept in its own process because the converter can crash natively on
full-integer calibration of WHILE loops (tensorflow/tensorflow#41305).
"""

import sys

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np

from prunelm_tf.export.saved_model import load_saved_model
from prunelm_tf.export.tflite import convert_to_tflite


def main(argv):
  saved_model_dir, calibration, out = argv[1:4]
  with np.load(calibration, allow_pickle=False) as npz:  # never unpickle a file
    inputs = [npz[k] for k in npz.files]
  flatbuffer = convert_to_tflite(load_saved_model(saved_model_dir), "int8",
                                 representative_inputs=lambda: iter(inputs))
  with open(out, "wb") as f:
    f.write(flatbuffer)


if __name__ == "__main__":
  main(sys.argv)
