"""The smallest reproduction of the full-integer converter failure on the biLM's WHILE loops.

  python -m benchmarks.int8_crash

Converts one tiny word-input biLM (1 layer, 8 cells, 4-dim projection, dynamic
time, LSTM loops as TFLite WHILE) to full-integer TFLite (``Optimize.DEFAULT``
+ representative dataset + ``TFLITE_BUILTINS_INT8``) in a child process and
prints how the child ended: its exit code (negative = killed by that signal,
a native crash) and the last lines of its stderr. Then the same model through
the fixed-length unrolled graph (``export.unrolled``, what ``export_tflite``
uses for "int8"), which converts. Each in its own process, so a crash of the
first cannot hide the second. What it found is in docs/results.md.
"""

from __future__ import annotations

import subprocess
import sys

_CHILD = r"""
import faulthandler
import sys
faulthandler.enable()  # a native crash prints the Python stack it happened under
import prunelm_tf  # Keras 2 before TensorFlow
import numpy as np
import tensorflow as tf
from prunelm_tf.export.saved_model import serving_function
from prunelm_tf.export.tflite import convert_to_tflite
from prunelm_tf.models import BiLMConfig, build_bilm

model = build_bilm(BiLMConfig(vocab_size=10, token_encoder="word", lstm_dim=8, projection_dim=4,
                              n_layers=1))
data = [np.array([[1, 4, 5, 6, 2]], np.int32)] * 4
if sys.argv[1] == "while":
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [serving_function(model, batch_size=1)], model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = lambda: ([x] for x in data)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  print("calling converter.convert() on the WHILE-loop graph", flush=True)
  flatbuffer = converter.convert()
else:
  flatbuffer = convert_to_tflite(model, "int8", representative_inputs=lambda: data, max_tokens=3)
print(f"converted: {len(flatbuffer)} bytes", flush=True)
"""


def run(kind: str) -> None:
  proc = subprocess.run([sys.executable, "-c", _CHILD, kind], capture_output=True, text=True,
                        check=False)
  lines = [l for l in (proc.stdout + proc.stderr).splitlines()
           if l.strip() and not l.startswith(("I0", "W0", "E0000", "WARNING: All log",
                                                   "Extension modules"))]
  how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
         else f"exit code {proc.returncode}")
  print(f"{kind}: {how}")
  for line in lines[-14:]:
    print(f"  | {line}")


if __name__ == "__main__":
  run("while")
  run("unrolled")
