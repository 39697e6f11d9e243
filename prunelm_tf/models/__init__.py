"""The biLM: encoders, LSTM-with-projection stacks, shared softmax, ScalarMix."""

from prunelm_tf.models.bilm import (CUSTOM_OBJECTS, build_bilm, input_name,
                                    lm_targets, lm_token_losses, output_model,
                                    representation_model)
from prunelm_tf.models.char_cnn import CharCNN, Highway
from prunelm_tf.models.config import BiLMConfig, CharCNNConfig
from prunelm_tf.models.layers import (ApplyMask, LayerRepresentations, ScalarMix,
                                      SharedSoftmax, TokenMask)
from prunelm_tf.models.lstm_projection import LSTMWithProjection
