"""An independent NumPy ELMo, written from ELMO_FORMAT.md steps 2-11 only.

float64, explicit loops, no code shared with prunelm_tf: it reads the options
and HDF5 datasets itself and builds its own character ids. Slow, so only for
the tiny fixtures.
"""

import json

import h5py
import numpy as np

# Step 2: raw special character ids.
BOS, EOS, BOW, EOW, PAD = 256, 257, 258, 259, 260


def char_ids(word, max_chars=50):
  """Step 2: the 50 shifted ids of one token (BOS/EOS rows for <S>/</S>)."""
  if word == "<S>":
    raw = [BOW, BOS, EOW]
  elif word == "</S>":
    raw = [BOW, EOS, EOW]
  else:
    raw = [BOW] + list(word.encode("utf-8", "ignore")[:max_chars - 2]) + [EOW]
  raw = raw + [PAD] * (max_chars - len(raw))
  return [i + 1 for i in raw]


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


class ReferenceElmo:
  """ELMo from options.json + HDF5, per ELMO_FORMAT.md."""

  def __init__(self, options_file, weight_file):
    with open(options_file) as f:
      opts = json.load(f)
    self.lstm = opts["lstm"]
    self.cnn = opts["char_cnn"]
    self.n_layers = self.lstm["n_layers"]
    self.skip = self.lstm["use_skip_connections"]
    self.cell_clip = self.lstm.get("cell_clip")
    self.proj_clip = self.lstm.get("proj_clip")
    self.w = {}
    with h5py.File(weight_file, "r") as f:
      f.visititems(lambda name, obj: self.w.__setitem__(name, np.array(obj, np.float64))
                   if isinstance(obj, h5py.Dataset) else None)
    # Step 3: a zero row for id 0.
    self.char_table = np.concatenate([np.zeros((1, self.w["char_embed"].shape[1])),
                                      self.w["char_embed"]], axis=0)
    self._cache = {}
    self.states = {}  # (direction, layer) -> {row: (c, h)}

  # Steps 3-6.
  def token_embedding(self, word):
    if word in self._cache:
      return self._cache[word]
    ids = char_ids(word, self.cnn["max_characters_per_token"])
    chars = np.stack([self.char_table[i] for i in ids])  # [50, dim]
    banks = []
    for i, (width, count) in enumerate(self.cnn["filters"]):
      kernel = self.w[f"CNN/W_cnn_{i}"][0]  # [width, dim, count]
      bias = self.w[f"CNN/b_cnn_{i}"]
      best = np.full(count, -np.inf)
      for p in range(len(ids) - width + 1):
        value = bias.copy()
        for k in range(width):
          value = value + chars[p + k] @ kernel[k]
        best = np.maximum(best, value)
      if self.cnn["activation"] == "relu":
        best = np.maximum(best, 0.0)
      else:
        best = np.tanh(best)
      banks.append(best)
    x = np.concatenate(banks)
    for k in range(self.cnn.get("n_highway", 0)):
      g = sigmoid(x @ self.w[f"CNN_high_{k}/W_carry"] + self.w[f"CNN_high_{k}/b_carry"])
      t = np.maximum(x @ self.w[f"CNN_high_{k}/W_transform"] +
                     self.w[f"CNN_high_{k}/b_transform"], 0.0)
      x = g * t + (1.0 - g) * x
    e = x @ self.w["CNN_proj/W_proj"] + self.w["CNN_proj/b_proj"]
    self._cache[word] = e
    return e

  # Step 7.
  def cell(self, d, l, x, c_prev, h_prev):
    root = f"RNN_{d}/RNN/MultiRNNCell/Cell{l}/LSTMCell"
    z = np.concatenate([x, h_prev]) @ self.w[f"{root}/W_0"] + self.w[f"{root}/B"]
    n = c_prev.shape[0]
    i, j, f, o = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
    c = sigmoid(f + 1.0) * c_prev + sigmoid(i) * np.tanh(j)
    if self.cell_clip:
      c = np.clip(c, -self.cell_clip, self.cell_clip)
    h = (sigmoid(o) * np.tanh(c)) @ self.w[f"{root}/W_P_0"]
    if self.proj_clip:
      h = np.clip(h, -self.proj_clip, self.proj_clip)
    return c, h

  def zero_state(self):
    return (np.zeros(self.lstm["dim"]), np.zeros(self.lstm["projection_dim"]))

  # Steps 1, 8-10 for one sentence, with optional initial/final state per (d, l).
  def sentence(self, tokens, state=None):
    """Returns ([n_layers + 1, n, 2 * proj], final state dict)."""
    words = ["<S>"] + list(tokens) + ["</S>"]
    e = [self.token_embedding(w) for w in words]
    T = len(words)
    final = {}
    per_direction = []
    for d in (0, 1):
      order = list(range(T)) if d == 0 else list(range(T - 1, -1, -1))
      inputs = e
      layers = []
      for l in range(self.n_layers):
        c, h = state[(d, l)] if state is not None else self.zero_state()
        out = [None] * T
        for t in order:
          c, h = self.cell(d, l, inputs[t], c, h)
          out[t] = h + inputs[t] if (self.skip and l > 0) else h
        final[(d, l)] = (c, h)
        layers.append(out)
        inputs = out
      per_direction.append(layers)
    rep = [np.stack([np.concatenate([e[t], e[t]]) for t in range(1, T - 1)])
           if T > 2 else np.zeros((0, 2 * len(e[0])))]
    for l in range(self.n_layers):
      rep.append(np.stack([np.concatenate([per_direction[0][l][t], per_direction[1][l][t]])
                           for t in range(1, T - 1)]) if T > 2 else np.zeros((0, 2 * len(e[0]))))
    return np.stack(rep), final

  def embed_stateless(self, sentences):
    return [self.sentence(s)[0] for s in sentences]

  def embed_stateful_batch(self, rows):
    """Step 11: rows[r] is a token list, or None for an all-padding row.

    Every (direction, layer) keeps (c, h) per row index; None rows and rows
    not in this batch keep theirs.
    """
    out = []
    for r, tokens in enumerate(rows):
      if tokens is None:
        out.append(None)
        continue
      state = {key: self.states.get((key, r), self.zero_state())
               for key in [(d, l) for d in (0, 1) for l in range(self.n_layers)]}
      rep, final = self.sentence(tokens, state)
      for key, value in final.items():
        self.states[(key, r)] = value
      out.append(rep)
    return out
