"""LSTMWithProjection against a NumPy implementation of ELMO_FORMAT.md step 7."""

import numpy as np
import pytest
import tensorflow as tf

from prunelm_tf.models import LSTMWithProjection


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(x, length, kernel, bias, projection, cell_clip, proj_clip, backwards=False):
  """One sentence x[:length] -> outputs [time, proj] (zeros beyond length), final (c, h)."""
  units = projection.shape[0]
  c = np.zeros(units)
  h = np.zeros(projection.shape[1])
  out = np.zeros((x.shape[0], projection.shape[1]))
  order = range(length - 1, -1, -1) if backwards else range(length)
  for t in order:
    z = np.concatenate([x[t], h]) @ kernel + bias
    i, j, f, o = np.split(z, 4)
    c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)
    if cell_clip:
      c = np.clip(c, -cell_clip, cell_clip)
    h = (_sigmoid(o) * np.tanh(c)) @ projection
    if proj_clip:
      h = np.clip(h, -proj_clip, proj_clip)
    out[t] = h
  return out, c, h


@pytest.mark.parametrize("backwards", [False, True])
def test_matches_numpy_reference_with_padding(backwards):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 6, 5)).astype(np.float32)
  lengths = np.array([6, 3, 1])
  mask = (np.arange(6)[None] < lengths[:, None]).astype(np.float32)
  layer = LSTMWithProjection(8, 4, cell_clip=0.5, proj_clip=0.3, go_backwards=backwards)
  layer.build([(None, None, 5), (None, None)])
  # Larger weights so that both clips are active.
  layer.kernel.assign(rng.normal(size=layer.kernel.shape) * 2)
  layer.bias.assign(rng.normal(size=layer.bias.shape))
  layer.projection.assign(rng.normal(size=layer.projection.shape))
  out, c_last, h_last = layer([x, mask], return_state=True)
  for b in range(3):
    ref, c, h = numpy_lstm(x[b].astype(np.float64), lengths[b], layer.kernel.numpy(),
                           layer.bias.numpy(), layer.projection.numpy(), 0.5, 0.3, backwards)
    np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(c_last[b].numpy(), c, atol=1e-5)
    np.testing.assert_allclose(h_last[b].numpy(), h, atol=1e-5)
  assert np.abs(c_last.numpy()).max() <= 0.5 + 1e-6
  assert np.abs(out.numpy()).max() <= 0.3 + 1e-6


def test_all_padding_row_keeps_initial_state_and_outputs_zero():
  layer = LSTMWithProjection(4, 2)
  x = tf.ones((2, 3, 2))
  mask = tf.constant([[1, 1, 0], [0, 0, 0]], tf.float32)
  c0 = tf.fill((2, 4), 0.25)
  h0 = tf.fill((2, 2), -0.5)
  out, c, h = layer([x, mask], initial_state=(c0, h0), return_state=True)
  np.testing.assert_array_equal(out[1].numpy(), 0.0)
  np.testing.assert_array_equal(out[0, 2].numpy(), 0.0)
  np.testing.assert_array_equal(c[1].numpy(), c0[1].numpy())
  np.testing.assert_array_equal(h[1].numpy(), h0[1].numpy())


def test_config_round_trip_and_prunable_weights():
  layer = LSTMWithProjection(8, 4, cell_clip=3.0, proj_clip=None, go_backwards=True, name="l")
  clone = LSTMWithProjection.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  layer.build([(None, None, 4), (None, None)])
  assert [w.name.split("/")[-1] for w in layer.get_prunable_weights()] == \
      ["kernel:0", "projection:0"]
  assert layer.kernel.shape == (8, 32)  # [input; h_prev] x 4 * units, ELMo's layout


@pytest.mark.parametrize("backwards", [False, True])
def test_internals_are_what_the_kernel_and_projection_multiply(backwards):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 6, 5)).astype(np.float32)
  lengths = np.array([6, 3, 1])
  mask = (np.arange(6)[None] < lengths[:, None]).astype(np.float32)
  layer = LSTMWithProjection(8, 4, cell_clip=0.5, proj_clip=0.3, go_backwards=backwards)
  layer.build([(None, None, 5), (None, None)])
  layer.kernel.assign(rng.normal(size=layer.kernel.shape) * 2)  # both clips active
  layer.bias.assign(rng.normal(size=layer.bias.shape))
  layer.projection.assign(rng.normal(size=layer.projection.shape))
  outputs = layer([x, mask]).numpy()
  kernel_inputs, cell_outputs = (t.numpy() for t in layer.internals([x, mask]))
  assert kernel_inputs.shape == (3, 6, 5 + 4) and cell_outputs.shape == (3, 6, 8)
  # x_t half: the input as fed; h_{t-1} half: the previous output in the layer's direction.
  np.testing.assert_array_equal(kernel_inputs[..., :5], x * mask[..., None])
  for b, n in enumerate(lengths):
    order = list(range(n - 1, -1, -1)) if backwards else list(range(n))
    previous = np.zeros(4, np.float32)
    for t in order:
      np.testing.assert_array_equal(kernel_inputs[b, t, 5:], previous)
      previous = outputs[b, t]
  # Padding is zero in both; the projection of the cell outputs is call()'s output.
  np.testing.assert_array_equal(kernel_inputs[mask == 0], 0.0)
  np.testing.assert_array_equal(cell_outputs[mask == 0], 0.0)
  assert np.abs(cell_outputs).max() <= np.tanh(0.5) + 1e-6  # clipped c
  np.testing.assert_allclose(np.clip(cell_outputs @ layer.projection.numpy(), -0.3, 0.3)
                             * mask[..., None], outputs, atol=1e-6)
