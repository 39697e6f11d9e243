"""``structured``: whole LSTM cells, character filters and projection dimensions removed.

``method.py``: its options and method; ``structured.py``: slicing a biLM to the kept units,
the unit counts for a budget and the units' importance.
"""

from prunelm_tf.compression.methods.structured.method import StructuredMethod, StructuredOptions
