"""``wanda``: |W|·‖x‖ pruning from --calibration text: ``obs``'s machinery, another criterion."""

from prunelm_tf.compression.methods.wanda.method import WandaMethod, WandaOptions
