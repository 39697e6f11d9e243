"""Real ELMo models in and out: options.json, HDF5 weights, embedding files.

Import from here (``from prunelm_tf import elmo``); the submodules are
implementation details.
"""

from prunelm_tf.elmo.embedder import check_model_source
from prunelm_tf.elmo.embedder import ElmoEmbedder
from prunelm_tf.elmo.embedder import Embedder
from prunelm_tf.elmo.embedder import open_embedder
from prunelm_tf.elmo.embedder import TFLiteElmoEmbedder
from prunelm_tf.elmo.embedding_file import embed_text_file
from prunelm_tf.elmo.embedding_file import read_embedding_file
from prunelm_tf.elmo.embedding_file import read_sentence_file
from prunelm_tf.elmo.embedding_file import write_embedding_file
from prunelm_tf.elmo.options import config_to_options
from prunelm_tf.elmo.options import load_options
from prunelm_tf.elmo.options import options_to_config
from prunelm_tf.elmo.weights import assign_elmo_weights
from prunelm_tf.elmo.weights import export_elmo
from prunelm_tf.elmo.weights import load_elmo
from prunelm_tf.elmo.weights import read_elmo_weights
from prunelm_tf.elmo.weights import weight_layout
from prunelm_tf.elmo.weights import WeightSpec

__all__ = [
    "ElmoEmbedder",
    "Embedder",
    "TFLiteElmoEmbedder",
    "WeightSpec",
    "assign_elmo_weights",
    "check_model_source",
    "config_to_options",
    "embed_text_file",
    "export_elmo",
    "load_elmo",
    "load_options",
    "open_embedder",
    "options_to_config",
    "read_elmo_weights",
    "read_embedding_file",
    "read_sentence_file",
    "weight_layout",
    "write_embedding_file",
]
