"""Every validation rule of the compression config, and its boundary."""

import pytest

from prunelm_tf.compression import CompressConfig, RetrainConfig, ScheduleConfig, \
    parse_layer_sparsity

BASE = dict(model_dir="run", eval="x.txt")


@pytest.mark.parametrize("kw,match", [
    (dict(sparsity_sweep=(1.0,)), r"in \[0, 1\)"),
    (dict(sparsity_sweep=(-0.1,)), r"in \[0, 1\)"),
    (dict(sparsity_sweep=()), "at least one"),
    (dict(layer_sparsity=(("softmax", 1.5),)), "softmax"),
    (dict(tflite_quantization=("int4",)), "unknown TFLite quantization mode 'int4'"),
    (dict(method="distill"), "method"),
    (dict(threshold_scope="row"), "threshold_scope"),
    (dict(method="retrain"), "needs a corpus"),
    (dict(model_dir="", options_file="o.json"), "go together"),
    (dict(options_file="o.json", weight_file="w.hdf5"), "exactly one input model"),
    (dict(method="retrain", train="t.txt", retrain=RetrainConfig(num_steps=10),
          schedule=ScheduleConfig(end_step=100)), "never reached"),
    (dict(threshold_allocation="greedy"), "threshold_allocation"),
    (dict(threshold_allocation="sensitivity"), "set it"),
    (dict(threshold_allocation="sensitivity", calibration="v.txt", threshold_scope="global"),
     "threshold_scope=layer"),
    (dict(threshold_allocation="sensitivity", calibration="v.txt", method="retrain",
          train="t.txt"), "--method=threshold only"),
    (dict(threshold_allocation="sensitivity", calibration="v.txt", calibration_sentences=0),
     "calibration_sentences"),
])
def test_bad_compress_config(kw, match):
  with pytest.raises(ValueError, match=match):
    CompressConfig(**{**BASE, **kw})


@pytest.mark.parametrize("kw,match", [
    (dict(begin_step=10, end_step=10), "begin_step"),
    (dict(begin_step=11, end_step=10), "begin_step"),
    (dict(final_sparsity=1.0), "final_sparsity"),
    (dict(initial_sparsity=0.5, final_sparsity=0.4), "initial_sparsity"),
    (dict(frequency=0), "frequency"),
    (dict(kind="cubic"), "schedule"),
])
def test_bad_schedule(kw, match):
  with pytest.raises(ValueError, match=match):
    ScheduleConfig(**kw)


def test_boundaries_pass():
  ScheduleConfig(begin_step=9, end_step=10, final_sparsity=0.0)
  ScheduleConfig(final_sparsity=0.999, initial_sparsity=0.999)
  CompressConfig(**BASE, sparsity_sweep=(0.0, 0.99), tflite_quantization=("int8", "float16"))
  CompressConfig(model_dir="", options_file="o.json", weight_file="w.hdf5", eval="x")
  CompressConfig(**BASE, threshold_allocation="sensitivity", calibration="v.txt",
                 calibration_sentences=1)


@pytest.mark.parametrize("kw,match", [
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(learning_rate=0.0), "learning_rate"),
])
def test_bad_retrain_config(kw, match):
  with pytest.raises(ValueError, match=match):
    RetrainConfig(**kw)
  for schedule in ("constant", "linear", "cosine"):
    RetrainConfig(lr_schedule=schedule)


def test_parse_layer_sparsity():
  assert parse_layer_sparsity("softmax=0,char_cnn/.*=0.5") == (("softmax", 0.0),
                                                               ("char_cnn/.*", 0.5))
  assert parse_layer_sparsity("") == ()
  with pytest.raises(ValueError, match="PATTERN=SPARSITY"):
    parse_layer_sparsity("softmax")
  with pytest.raises(ValueError, match="not a number"):
    parse_layer_sparsity("softmax=half")
