"""The tolerance for float32 results of the same math reached by different routes.

Two computations of the same values with a different batch shape, code path
(stateless vs stateful, Keras vs SavedModel vs HDF5 file) or runtime sum in a
different order, and the order depends on the CPU's kernels (AVX2 vs AVX-512,
oneDNN blocking by batch size). Seen on a second machine: batch 1 vs batch 8
differed by 1.4e-6 at a value of 2.68 (5e-7 relative). An absolute 1e-6 is
therefore machine-dependent for values of order 1; this relative-plus-absolute
bound (about 80 float32 ulps, plus a floor near zero) holds on any x86 CPU and
still fails on any real bug, which moves values by 1e-3 or more.

Bit-exact comparisons stay `assert_array_equal` where the computation is the
same graph on the same shapes (weight round trips, masks, padding zeros).
"""

import numpy as np

RTOL = 1e-5
ATOL = 1e-6


def assert_float32_close(actual, expected, *, rtol: float = RTOL, atol: float = ATOL,
                         err_msg: str = "") -> None:
  """``assert_allclose`` with the cross-CPU float32 tolerance above."""
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol,
                             err_msg=err_msg)
