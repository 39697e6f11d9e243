r"""Evaluates compressed biLM variants: perplexity, SST-2, NER, MRPC, CoLA, sizes, latency.

  python -m pipelines.evaluate --target=saved_models/compress \
      --perplexity_corpus=../shared/data/ptb/ptb.test.txt --sst2_dir=../shared/data/sst2 \
      --out_dir=saved_models/compress/evaluation

--target is a pipelines.compress run folder (every variant and quantization
mode), one of its variant folders, or a pipelines.train run folder. Each
(variant, mode) is written to OUT_DIR/<variant>/<mode>/evaluation.json as soon
as it is done; a second call with the same --out_dir resumes.
"""

import os

from absl import app
from absl import flags

import pipelines  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines import cli
from prunelm_tf.evaluation import LatencyConfig, ProbeConfig
from prunelm_tf.evaluation.ner import NerConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.utils import files

_TARGET = flags.DEFINE_string("target", None, "A pipelines.compress run folder, one of its "
                              "variant folders, or a pipelines.train run folder.", required=True)
_VARIANTS = flags.DEFINE_list("variants", [], "Only these variants (e.g. dense,retrain_90); "
                              "empty = all.")
_QUANT = flags.DEFINE_list("quantization", [], "Only these TFLite modes of each variant "
                           "(none, dynamic, float16, int8); empty = every mode it has.")
_PPL = flags.DEFINE_string("perplexity_corpus", "", "Text (file glob or tfds:NAME/SPLIT) for "
                           "forward/backward perplexity; empty = skip. Models without a softmax "
                           "(imported ELMo) have no perplexity.")
_MAX_SENT = flags.DEFINE_integer("max_sentences", 0, "Perplexity sentences to read; 0 = all.",
                                 lower_bound=0)
_SST2 = flags.DEFINE_string("sst2_dir", "", "Folder with GLUE SST-2 train.tsv and dev.tsv; "
                            "empty = skip the downstream task.")
_PROBE_TRAIN = flags.DEFINE_integer("sst2_train_sentences", 0, "Train the SST-2 probe on this "
                                    "many (seeded) train sentences; 0 = all 67k, which embeds "
                                    "every one of them once per entry.", lower_bound=0)
_PROBE_EPOCHS = flags.DEFINE_integer("sst2_epochs", 10, "Probe training epochs.", lower_bound=1)
_NER = flags.DEFINE_string("ner_dir", "", "Folder with CoNLL-2003 eng.train, eng.testa (dev) and "
                           "eng.testb (test); empty = skip NER. A BiLSTM tagger is trained on "
                           "each entry's frozen features (minutes per entry; features cached).")
_NER_EPOCHS = flags.DEFINE_integer("ner_epochs", 10, "NER tagger epochs (best dev epoch kept).",
                                   lower_bound=1)
_NER_SEEDS = flags.DEFINE_list("ner_seeds", [], "Two or more NER tagger seeds (e.g. 0,1,2): "
                               "NER F1 as mean ± std over them, features computed once; "
                               "empty = one seed.")
_MRPC = flags.DEFINE_string("mrpc_dir", "", "Folder with GLUE MRPC train.tsv and dev.tsv; "
                            "empty = skip MRPC (same probe settings as SST-2).")
_COLA = flags.DEFINE_string("cola_dir", "", "Folder with GLUE CoLA train.tsv and dev.tsv; "
                            "empty = skip CoLA (Matthews correlation on dev, same probe settings "
                            "as SST-2).")
_PROTOCOL = flags.DEFINE_list(
    "downstream_protocol", ["retrain"], "How SST-2, CoLA, MRPC and NER meet each variant: retrain "
    "(the probe / tagger trained on each variant's own features: information left) and/or "
    "dropin (trained once on the dense model's features, per --ner_seeds seed, and fed each "
    "variant's features unchanged: whether a downstream model you trained still works). "
    "dropin needs the run folder's dense model; a variant with another representation width "
    "is marked not drop-in.")
_LATENCY = flags.DEFINE_bool("latency", True, "Measure TFLite and SavedModel latency (batch 1, "
                             "--latency_tokens tokens) in child processes.")
_LAT_RUNS = flags.DEFINE_integer("latency_runs", 100, "Timed runs per measurement.",
                                 lower_bound=1)
_LAT_TOKENS = flags.DEFINE_integer("latency_tokens", 20, "Sentence length for latency.",
                                   lower_bound=1)
_THREADS = flags.DEFINE_list("latency_threads", ["1", "2"], "Interpreter thread counts.")
_THROUGHPUT = flags.DEFINE_string(
    "throughput_corpus", "", "Text (file glob or tfds:NAME/SPLIT) whose first "
    "--throughput_sentences sentences each TFLite file embeds one at a time, for its words per "
    "second at each --latency_threads count (with --latency); empty = skip.")
_THROUGHPUT_SENT = flags.DEFINE_integer("throughput_sentences", 1000, "Sentences of "
                                        "--throughput_corpus to embed.", lower_bound=1)
_OUT = flags.DEFINE_string("out_dir", None, "Where the entries, caches and evaluation.json "
                           "go; default TARGET/evaluation.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = EvaluateConfig(
      target=_TARGET.value, variants=tuple(_VARIANTS.value), quantization=tuple(_QUANT.value),
      perplexity_corpus=_PPL.value, max_sentences=_MAX_SENT.value, sst2_dir=_SST2.value,
      ner_dir=_NER.value, ner=NerConfig(epochs=_NER_EPOCHS.value),
      ner_seeds=tuple(_NER_SEEDS.value), mrpc_dir=_MRPC.value, cola_dir=_COLA.value,
      downstream_protocol=tuple(_PROTOCOL.value),
      probe=ProbeConfig(max_train_sentences=_PROBE_TRAIN.value, epochs=_PROBE_EPOCHS.value),
      latency=LatencyConfig(runs=_LAT_RUNS.value, num_tokens=_LAT_TOKENS.value,
                            threads=tuple(int(t) for t in _THREADS.value)),
      measure_latency=_LATENCY.value, throughput_corpus=_THROUGHPUT.value,
      throughput_sentences=_THROUGHPUT_SENT.value)
  out_dir = _OUT.value or os.path.join(_TARGET.value, "evaluation")
  entries = evaluate(config, out_dir)
  files.write_json(os.path.join(out_dir, "evaluation.json"), {"entries": entries})
  def num(value, fmt):
    return "—" if value is None else format(value, fmt)

  for e in entries:
    zip_bytes = e["sizes"]["tflite_zip_bytes"]
    print(f"{e['name']:<28} sparsity {num(e['sparsity'], '.3f'):>6}"
          f"  ppl {num(e['perplexity'] and e['perplexity']['mean'], '.2f'):>8}"
          f"  sst2 {num(e['sst2_accuracy'], '.4f'):>6}"
          f"  ner f1 {num(e.get('ner_test_f1'), '.4f'):>6}"
          f"  drop-in ner f1 {num(e.get('ner_dropin_test_f1'), '.4f'):>6}"
          f"  mrpc {num(e.get('mrpc_accuracy'), '.4f'):>6}"
          f"  cola mcc {num(e.get('cola_mcc'), '.4f'):>7}"
          f"  tflite zip {num(zip_bytes and zip_bytes / 1e6, '.3f'):>7} MB"
          f"  p50 {num(e['latency']['tflite'].get('1', {}).get('p50_ms'), '.2f'):>7} ms")
  print(f"wrote {os.path.join(out_dir, 'evaluation.json')}")


if __name__ == "__main__":
  cli.run(main)
