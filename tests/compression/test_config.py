"""Every validation rule of the compression config, and its boundary."""

import json

import pytest

from prunelm_tf.compression import CompressConfig, RetrainConfig, ScheduleConfig, \
    parse_layer_sparsity
from prunelm_tf.compression.methods.retrain import RetrainOptions
from prunelm_tf.compression.methods.threshold import ThresholdOptions

BASE = dict(model_dir="run", eval="x.txt")


def _threshold(**kw):
  return dict(method="threshold", method_options=ThresholdOptions(**kw))


@pytest.mark.parametrize("kw,match", [
    (dict(sparsity_sweep=(1.0,)), r"in \[0, 1\)"),
    (dict(sparsity_sweep=(-0.1,)), r"in \[0, 1\)"),
    (dict(sparsity_sweep=()), "at least one"),
    (dict(layer_sparsity=(("softmax", 1.5),)), "softmax"),
    (dict(tflite_quantization=("int4",)), "unknown TFLite quantization mode 'int4'"),
    (dict(method="distill"), "not a compression method; choose from .*obs, retrain, .*threshold"),
    (dict(method="retrain"), "set --train"),
    (dict(model_dir="", options_file="o.json"), "go together"),
    (dict(options_file="o.json", weight_file="w.hdf5"), "exactly one input model"),
    (dict(method="retrain", train="t.txt", method_options=dict(
        retrain=dict(num_steps=10), schedule=dict(end_step=100))), "never reached"),
    (dict(method="threshold", method_options=dict(allocation="greedy")),
     "--allocation='greedy' is not a choice of --method=threshold: it takes uniform, sensitivity"),
    (_threshold(allocation="sensitivity"), "--calibration"),
    (dict(method="threshold", calibration="v.txt",
          method_options=dict(allocation="sensitivity", scope="global")), "threshold_scope=layer"),
    # Retraining has no allocation option: a typo'd or foreign key is refused.
    (dict(method="retrain", train="t.txt", method_options=dict(allocation="sensitivity")),
     "unknown RetrainOptions keys"),
    (dict(calibration="v.txt", calibration_sentences=0, **_threshold(allocation="sensitivity")),
     "calibration_sentences"),
])
def test_bad_compress_config(kw, match):
  with pytest.raises(ValueError, match=match):
    CompressConfig(**{**BASE, **kw})


def test_options_of_another_method_are_a_type_error():
  with pytest.raises(TypeError, match="must be a RetrainOptions"):
    CompressConfig(**BASE, method="retrain", train="t.txt", method_options=ThresholdOptions())


def test_config_json_round_trip_keeps_method_options():
  config = CompressConfig(**BASE, method="retrain", train="t.txt", method_options=RetrainOptions(
      schedule=ScheduleConfig(end_step=50, frequency=5), retrain=RetrainConfig(num_steps=60)))
  again = CompressConfig.from_dict(json.loads(config.to_json()))
  assert again == config
  assert again.method_options.schedule.frequency == 5


@pytest.mark.parametrize("kw,match", [
    (dict(begin_step=10, end_step=10), "begin_step"),
    (dict(begin_step=11, end_step=10), "begin_step"),
    (dict(initial_sparsity=1.0), "initial_sparsity"),
    (dict(frequency=0), "frequency"),
    (dict(kind="cubic"), "schedule"),
])
def test_bad_schedule(kw, match):
  with pytest.raises(ValueError, match=match):
    ScheduleConfig(**kw)


def test_boundaries_pass():
  ScheduleConfig(begin_step=9, end_step=10)
  ScheduleConfig(initial_sparsity=0.999)
  CompressConfig(**BASE, sparsity_sweep=(0.0, 0.99), tflite_quantization=("int8", "float16"))
  CompressConfig(model_dir="", options_file="o.json", weight_file="w.hdf5", eval="x")
  CompressConfig(**BASE, calibration="v.txt", calibration_sentences=1,
                 **_threshold(allocation="sensitivity"))


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


def test_fields_added_later_are_recorded_only_when_set():
  """Run folders made before a field existed resume: at its default it is left out."""
  config = CompressConfig(**BASE, method="threshold", calibration="v.txt",
                          method_options=ThresholdOptions(allocation="sensitivity"))
  record = json.loads(config.to_json())
  assert record["method_options"] == {"scope": "layer", "allocation": "sensitivity"}
  raised = CompressConfig(**BASE, method="threshold", calibration="v.txt",
                          method_options=ThresholdOptions(allocation="sensitivity",
                                                          sensitivity_max_level=0.99))
  assert json.loads(raised.to_json())["method_options"]["sensitivity_max_level"] == 0.99
  assert CompressConfig.from_dict(json.loads(raised.to_json())) == raised
  retrain = CompressConfig(**BASE, method="retrain", train="t.txt")
  options = json.loads(retrain.to_json())["method_options"]
  assert "num_epochs" not in options["retrain"]


def test_canonical_json_reads_records_with_and_without_defaulted_fields():
  config = CompressConfig(**BASE, method="retrain", train="t.txt")
  now = json.loads(config.to_json())
  older = json.loads(config.to_json())
  older["method_options"]["retrain"]["num_epochs"] = 0.0
  assert older != now
  assert CompressConfig.canonical_json(older) == now
  assert CompressConfig.canonical_json(now) == now
  changed = json.loads(config.to_json())
  changed["method_options"]["retrain"]["num_epochs"] = 2.0
  assert CompressConfig.canonical_json(changed)["method_options"]["retrain"]["num_epochs"] == 2.0


def test_a_config_json_of_the_earlier_flags_reads_unchanged():
  """--threshold_allocation and --lowrank_allocation were recorded under the option's field
  name, allocation, which is the one name now: their config.json files rerun as they are."""
  for method, options in (("threshold", {"scope": "layer", "allocation": "sensitivity"}),
                          ("lowrank", {"criterion": "svd", "allocation": "uniform",
                                       "damp": 0.01})):
    recorded = json.loads(CompressConfig(**BASE, method=method, calibration="v.txt",
                                         method_options=options).to_json())
    assert recorded["method_options"] == options
    assert CompressConfig.canonical_json(recorded) == recorded
  # A record with the flag's old name as a key is not one this project wrote: refused, naming
  # the option's name.
  with pytest.raises(ValueError, match=r"unknown ThresholdOptions keys \['threshold_allocation'"
                                       r"\]; known: \['allocation'"):
    CompressConfig(**BASE, method="threshold", method_options={"threshold_allocation": "uniform"})
