r"""Latency vs perplexity of the benchmark's variants, timed in one run (issue #11).

  python -m benchmarks.latency_frontier --bench_dir=DIR [--groups=a,b] [--threads=1,2]
      [--rounds=3] [--runs=50] [--max_delta=0.05]

DIR is a `benchmarks.elmo_ptb` output folder: every finished variant of every
group (a recipe group's: its final stage's, named "<amount x 100>/<variant>"; and the
dense model once) is timed for each of its TFLite files
(quantization modes, and the int8 file of `benchmarks.elmo_int8` when made)
at batch 1 and 20 tokens, each in a fresh child process
(`evaluation.latency.measure_latency`). Files are timed round-robin,
``--rounds`` times, and each figure is the median over rounds of the per-round
p50 / p90, so that a change of machine load during the run hits every file
alike; speed-ups are ratios to the dense float32 TFLite file of the same run.
Perplexity (PTB test, mean of directions) and sizes come from each variant's
metrics.json; then each file embeds the first ``--throughput_sentences`` PTB
test sentences (words per second), and the float model's SST-2 and NER
figures (`benchmarks.elmo_ptb --downstream`) are added where measured. Writes DIR/latency_frontier.{json,md} and
DIR/latency_vs_perplexity.png (the Pareto front marked), and checks the
issue's target: the fastest variant within +5 % mean perplexity is at least
3x faster than the dense float32 TFLite at 1 thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
from benchmarks.elmo_ptb import layout
from benchmarks.paths import PTB_TEST
from prunelm_tf.data.corpus import load_corpus
from prunelm_tf.evaluation.evaluate import encode_sentences
from prunelm_tf.evaluation.latency import latency_input, measure_latency, measure_throughput
from prunelm_tf.reporting import plots as plots_lib
from prunelm_tf.utils import files


def int8_files(bench_dir: str, group: str, variant: str) -> dict:
  """The int8 file `benchmarks.elmo_int8` made of a variant, with its size ({} if none)."""
  done = os.path.join(bench_dir, "int8", group, variant, "result.json")
  if not os.path.exists(done):
    return {}
  result = files.read_json(done)
  if "error" in result:
    return {}
  return {"int8": (os.path.join(os.path.dirname(done), "bilm_int8.tflite"),
                   result["gzip_bytes"])}


def collect(bench_dir: str, groups):
  """[(group, name, variant folder, metrics)] of every finished variant with a TFLite file,
  the dense model first (`layout.finished_variants`: a recipe group's variants are its
  final stage's, named "<amount x 100>/<variant>")."""
  return [(group, name, v, files.read_json(v.metrics_json))
          for group, name, v in layout.finished_variants(bench_dir, groups) if v.tflite_files()]


def pareto(points):
  """Indices of the points not dominated in (latency, perplexity), both lower-better."""
  front = []
  for i, (lat, ppl) in enumerate(points):
    if not any((l2 <= lat and p2 <= ppl) and (l2 < lat or p2 < ppl)
               for j, (l2, p2) in enumerate(points) if j != i):
      front.append(i)
  return front


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--bench_dir", required=True)
  parser.add_argument("--groups", default="", help="Only these groups (default: all).")
  parser.add_argument("--threads", default="1,2")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--runs", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--num_tokens", type=int, default=20)
  parser.add_argument("--throughput_sentences", type=int, default=1000,
                      help="PTB test sentences each file embeds (batch 1) for its words per "
                           "second at each thread count, after the latency rounds; 0 = skip.")
  parser.add_argument("--max_delta", type=float, default=0.05,
                      help="Quality bound of the target: mean perplexity within this of dense.")
  args = parser.parse_args()
  if args.rounds < 1 or args.runs < 1:
    parser.error("--rounds and --runs must be >= 1")
  threads = [int(t) for t in args.threads.split(",")]
  entries = collect(args.bench_dir, set(filter(None, args.groups.split(","))))
  if not entries or entries[0][0] != "dense":
    sys.exit(f"error: no finished benchmark group in --bench_dir={args.bench_dir}")
  dense_ppl = entries[0][2]["perplexity"]["mean"]
  jobs = []
  for group, name, v, metrics in entries:
    config, vocab, _ = v.read_description()
    ids = latency_input(config.token_encoder == "char", args.num_tokens,
                        config.char_cnn.max_characters_per_token,
                        vocab_size=None if config.token_encoder == "char" else config.vocab_size)
    tflite = {m: (p, None) for m, p in v.tflite_files().items()}
    tflite.update(int8_files(args.bench_dir, group, name))
    for mode, (path, gzip_bytes) in tflite.items():
      for t in threads:
        jobs.append({"group": group, "variant": name, "mode": mode, "threads": t,
                     "path": path, "ids": ids, "metrics": metrics, "rounds": [],
                     "gzip_bytes": gzip_bytes, "config": config, "vocab": vocab})
  start = time.time()
  for r in range(args.rounds):
    for job in jobs:
      try:
        result = measure_latency("tflite", job["path"], job["ids"], threads=job["threads"],
                                 warmup=args.warmup, runs=args.runs)
        job["rounds"].append({"p50_ms": result["p50_ms"], "p90_ms": result["p90_ms"]})
      except RuntimeError as e:  # e.g. XNNPACK refuses a file: recorded, not fatal
        job["error"] = str(e).splitlines()[0]
    print(f"round {r + 1}/{args.rounds}: {len(jobs)} files timed, "
          f"{time.time() - start:.0f} s", flush=True)
  if args.throughput_sentences:
    corpus = load_corpus(PTB_TEST, args.throughput_sentences,
                         what="PTB test")
    for job in jobs:
      encoded = encode_sentences(corpus, job["config"], job["vocab"])
      try:
        job["throughput"] = measure_throughput(job["path"], encoded, threads=job["threads"])
      except RuntimeError as e:
        job["error"] = job.get("error") or str(e).splitlines()[0]
    print(f"throughput: {len(jobs)} files, {time.time() - start:.0f} s", flush=True)

  rows = []
  for job in jobs:
    m = job["metrics"]
    ppl = (m.get("perplexity") or {}).get("mean")
    sizes = (m.get("sizes") or {}).get("tflite", {}).get(job["mode"], {})
    row = {k: job[k] for k in ("group", "variant", "mode", "threads")}
    tasks = ((layout.downstream_of(args.bench_dir, job["group"], job["variant"]) or {})
             if job["mode"] == "none" else {})
    row.update({"ppl_mean": ppl, "ppl_delta": None if ppl is None else ppl / dense_ppl - 1,
                "tflite_gzip_bytes": job["gzip_bytes"] or sizes.get("gzip_bytes"),
                "words_per_second": (job.get("throughput") or {}).get("words_per_second"),
                "sst2_accuracy": tasks.get("sst2_accuracy"),
                "ner_test_f1": tasks.get("ner_test_f1"),
                "method": m.get("method", "dense"), "target_sparsity": m.get("target_sparsity", 0.0),
                "removed_fraction": m.get("removed_fraction"),
                "error": job.get("error")})
    if job["rounds"]:
      row["p50_ms"] = float(np.median([x["p50_ms"] for x in job["rounds"]]))
      row["p90_ms"] = float(np.median([x["p90_ms"] for x in job["rounds"]]))
      row["rounds_p50_ms"] = [x["p50_ms"] for x in job["rounds"]]
    rows.append(row)
  base = {t: next((r["p50_ms"] for r in rows if r["group"] == "dense" and r["mode"] == "none"
                   and r["threads"] == t and "p50_ms" in r), None) for t in threads}
  for r in rows:
    if "p50_ms" in r and base.get(r["threads"]):
      r["speedup_vs_dense_float"] = base[r["threads"]] / r["p50_ms"]

  command = "python -m benchmarks.latency_frontier " + " ".join(sys.argv[1:])
  lines = ["# Latency vs perplexity (TFLite, batch 1, %d tokens)\n" % args.num_tokens,
           f"Command: `{command}`\n",
           f"Each figure: median over {args.rounds} round-robin rounds of the p50 / p90 of "
           f"{args.runs} timed invocations in a fresh process. Speed-up = dense float32 "
           "TFLite p50 / this p50, same thread count, same run. Δ = mean PTB test perplexity "
           "vs dense. Words/s: embedding the first "
           f"{args.throughput_sentences} PTB test sentences one by one (batch 1; an int8 file "
           "runs its fixed length). SST-2 dev accuracy and NER test F1: the float model's "
           "(`benchmarks.elmo_ptb --downstream`), on its none row.\n",
           "| group | variant | mode | threads | p50 / p90 ms | speed-up | words/s | ppl mean | "
           "Δ | TFLite gzip MB | SST-2 | NER F1 | error |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(rows, key=lambda r: (r["threads"], r.get("p50_ms") or 1e9)):
    lines.append(
        f"| {r['group']} | {r['variant']} | {r['mode']} | {r['threads']} | "
        + (f"{r['p50_ms']:.2f} / {r['p90_ms']:.2f}" if "p50_ms" in r else "—") + " | "
        + (f"{r['speedup_vs_dense_float']:.2f}x" if "speedup_vs_dense_float" in r else "—")
        + " | " + ("—" if r["words_per_second"] is None else f"{r['words_per_second']:.0f}")
        + " | " + ("—" if r["ppl_mean"] is None else f"{r['ppl_mean']:.1f}") + " | "
        + ("—" if r["ppl_delta"] is None else f"{r['ppl_delta'] * 100:+.1f} %") + " | "
        + ("—" if not r["tflite_gzip_bytes"] else f"{r['tflite_gzip_bytes'] / 1e6:.2f}") + " | "
        + ("—" if r["sst2_accuracy"] is None else f"{r['sst2_accuracy'] * 100:.2f}") + " | "
        + ("—" if r["ner_test_f1"] is None else f"{r['ner_test_f1'] * 100:.2f}")
        + f" | {r['error'] or ''} |")
  ok = [r for r in rows if r["threads"] == 1 and "speedup_vs_dense_float" in r
        and r["ppl_delta"] is not None and r["ppl_delta"] <= args.max_delta]
  lines.append("\n## Target\n")
  if ok:
    best = max(ok, key=lambda r: r["speedup_vs_dense_float"])
    met = best["speedup_vs_dense_float"] >= 3.0
    lines.append(f"- fastest within +{args.max_delta:.0%} mean perplexity at 1 thread: "
                 f"{best['variant']} ({best['group']}, {best['mode']}), "
                 f"{best['speedup_vs_dense_float']:.2f}x the dense float32 TFLite, Δ "
                 f"{best['ppl_delta'] * 100:+.1f} % (target 3x: **{'met' if met else 'missed'}**).")
  text = "\n".join(lines) + "\n"
  files.write_text(os.path.join(args.bench_dir, "latency_frontier.md"), text)
  files.write_json(os.path.join(args.bench_dir, "latency_frontier.json"),
                   {"rows": rows, "command": command, "seconds": time.time() - start})
  _plot(rows, args.bench_dir, threads[0])
  print(text)


def _plot(rows, out_dir: str, threads: int) -> None:
  pts = [r for r in rows if r["threads"] == threads and "p50_ms" in r and r["ppl_mean"]]
  if not pts:
    return
  try:
    fig, ax = plots_lib.new_figure()
  except ImportError:  # plots are optional
    return
  for mode, marker in (("none", "o"), ("dynamic", "s"), ("int8", "^"), ("float16", "D")):
    sel = [r for r in pts if r["mode"] == mode]
    ax.scatter([r["p50_ms"] for r in sel], [r["ppl_mean"] for r in sel], marker=marker,
               label=f"TFLite {mode}", alpha=0.75)
  front = [pts[i] for i in pareto([(r["p50_ms"], r["ppl_mean"]) for r in pts])]
  front.sort(key=lambda r: r["p50_ms"])
  ax.plot([r["p50_ms"] for r in front], [r["ppl_mean"] for r in front], "k--", lw=1,
          label="Pareto front")
  for r in front:
    ax.annotate(r["variant"], (r["p50_ms"], r["ppl_mean"]), fontsize=7)
  ax.set_yscale("log")
  ax.set_xlabel(f"TFLite p50 latency, ms (batch 1, {threads} thread)")
  ax.set_ylabel("PTB test perplexity (mean of directions)")
  ax.legend(fontsize=8)
  plots_lib.save_png(fig, os.path.join(out_dir, "latency_vs_perplexity.png"))


if __name__ == "__main__":
  main()
