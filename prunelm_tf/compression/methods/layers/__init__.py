"""``layers``: LD-Net layer selection, a biLM with fewer LSTM layers.

``method.py``: its options, criteria and method; ``selection.py``: the biLM with only the
kept layers.
"""

from prunelm_tf.compression.methods.layers.method import LayersMethod, LayersOptions
