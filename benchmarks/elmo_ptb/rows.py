"""Report rows: one dict per finished variant, read from the benchmark folder's runs.

A row holds what the report and the plots show of a variant (perplexities and their Δ
against the benchmark's dense model, sparsity of the embedder, sizes, retraining budget,
seconds); ``downstream.with_downstream`` adds its downstream entries.
"""

from __future__ import annotations

import json
import os

from benchmarks.elmo_ptb import layout
from benchmarks.elmo_ptb.groups import COMBINED, RECIPE_GROUPS
from prunelm_tf.compression.run_folder import CompressionRunFolder
from prunelm_tf.compression.shared.targets import prunable_weights, subset_sparsity
from prunelm_tf.models.bilm import build_bilm
from prunelm_tf.models.config import BiLMConfig
from prunelm_tf.utils import files


def finished_result(path: str):
  """{"dense", "variants"} of a compression run folder's finished entries, or None."""
  folder = CompressionRunFolder(path)
  if not (os.path.exists(folder.config_json) and folder.dense.is_complete()):
    return None
  return {"dense": files.read_json(folder.dense.metrics_json),
          "variants": [files.read_json(v.metrics_json) for v in folder.variants()
                       if v.is_complete()]}


def recipe_rows(group: str, run_dir: str, amount: float) -> list:
  """Report rows of one finished recipe run: the final stage's variants, named
  "<amount tag>/<variant>", with the group's amount as their target when the final stage
  has none, the recipe's stages, and the fraction every shape-changing stage took out.
  A run of several stages is measured against the first stage's dense entry (the
  benchmark's dense model); an unfinished run has no rows.
  """
  dirs = layout.stage_dirs(run_dir)
  results = [finished_result(d) for d in dirs]
  if any(r is None for r in results):
    return []
  reference = results[0]["dense"] if len(dirs) > 1 else None
  rows = rows_of(group, results[-1], reference=reference, group_dir=dirs[-1])
  kept, shaped = 1.0, False
  for result in results[:-1]:
    for v in result["variants"][:1]:  # a stage before the last has one variant
      if v.get("removed_fraction") is not None:
        kept, shaped = kept * (1 - v["removed_fraction"]), True
  methods = [files.read_config_json(CompressionRunFolder(d).config_json)["method"] for d in dirs]
  for r in rows:
    if r["group"] == "dense":
      continue
    own = r.get("removed_fraction")
    r.update(variant=f"{layout.amount_tag(amount)}/{r['variant']}",
             recipe=RECIPE_GROUPS[group].recipe, amount=amount, stages=methods,
             target_sparsity=r["target_sparsity"] or amount,
             removed_fraction=(1 - kept * (1 - (own or 0.0)) if shaped or own is not None
                               else None))
  return rows


def pruned_and_retrained(row) -> bool:
  """A row pruned and trained within its run: --method=retrain, or a recipe's fine-tuning
  of a model that kept its shape (the shape-changing recipes are their own families)."""
  return row["method"] == "retrain" or (row["method"] == "finetune"
                                        and not row.get("removed_fraction"))


_SIZES_BY_ARCHITECTURE = {}


def recorded_weight_sizes(variant_dir: str):
  """{matrix: size} of the prunable matrices of a variant folder's architecture, or None.

  For sparsity records written before they held the sizes ("num_weights"):
  built from the folder's config.json (no weights read), once per architecture.
  """
  path = os.path.join(variant_dir, "config.json")
  if not os.path.exists(path):
    return None
  model = files.read_json(path).get("model")
  if not isinstance(model, dict):
    return None
  key = json.dumps(model, sort_keys=True)
  if key not in _SIZES_BY_ARCHITECTURE:
    built = build_bilm(BiLMConfig.from_dict(model))
    _SIZES_BY_ARCHITECTURE[key] = {n: int(w.shape.num_elements())
                                   for n, w in prunable_weights(built).items()}
  return _SIZES_BY_ARCHITECTURE[key]


def is_embedder_matrix(name: str) -> bool:
  """Everything the representation model holds: all prunable matrices but the softmax."""
  return not name.startswith("softmax/")


def _deltas(ppl: dict, dense: dict) -> dict:
  """Relative change of each of ``ppl``'s perplexities against ``dense``'s ({} if either is missing)."""
  return {k: ppl[k] / dense[k] - 1 for k in ppl} if ppl and dense else {}


def rows_of(group: str, result, reference=None, group_dir: str = "") -> list:
  """Report rows of one group's result (``compress``'s return value).

  ``reference``: the benchmark's dense metrics when the group compressed a
  variant further (a combination): its "dense" entry is that variant, so it is
  left out, Δ is taken against ``reference`` and the cosine similarity (to the
  variant, not to the dense model) is not shown.
  ``group_dir``: the group's run folder, where the matrix sizes of records that
  lack them are found (without it such rows have no embedder sparsity).
  """
  combined = reference is not None
  dense_ppl = (reference if combined else result["dense"])["perplexity"]
  dense_valid = (reference if combined else result["dense"]).get("valid_perplexity") or {}
  out = []
  for v in ([] if combined else [result["dense"]]) + result["variants"]:
    ppl = v.get("perplexity") or {}
    valid = v.get("valid_perplexity") or {}
    sims = {} if combined else v.get("representation_similarity") or {}
    out.append({
        "group": "dense" if v["name"] == "dense" else group, "variant": v["name"],
        "method": v.get("method", "dense"), "method_options": v.get("method_options"),
        "target_sparsity": v.get("target_sparsity", 0.0),
        "sparsity": v["sparsity"]["overall"],
        # Of the embedder's matrices (the softmax left out); None if their sizes are unknown.
        "embedder_sparsity": subset_sparsity(
            v["sparsity"], is_embedder_matrix,
            None if "num_weights" in v["sparsity"] or not group_dir else recorded_weight_sizes(
                os.path.join(group_dir, "dense") if v["name"] == "dense" else
                CompressionRunFolder(group_dir).variant(v["name"]).path)),
        # Shape-changing methods: the fraction of the compressed matrices' parameters removed.
        "removed_fraction": v.get("removed_fraction"),
        "num_parameters": v.get("num_parameters"),
        "ppl": ppl, "ppl_delta": _deltas(ppl, dense_ppl),
        # PTB valid (what recipes are chosen by), when the group measured it.
        "valid_ppl": valid, "valid_delta": _deltas(valid, dense_valid),
        # An averaged retraining's last step on valid (before the average was written).
        "valid_delta_before_average": _deltas(
            (v.get("retraining") or {}).get("valid_perplexity_before_average") or {}, dense_valid),
        "cosine_similarity": sum(sims.values()) / len(sims) if sims else None,
        "saved_model_zip_bytes": v["sizes"]["saved_model_zip_bytes"],
        "tflite_zip_bytes": {m: s["gzip_bytes"] for m, s in v["sizes"]["tflite"].items()},
        # Retraining, or the fine-tuning of a shape-changing method (same record).
        "retraining": v.get("retraining") or v.get("finetuning"), "seconds": v.get("seconds"),
        "tflite_errors": v.get("tflite_errors")})
  return out


def finished_rows(out_dir: str) -> list:
  """The rows of every finished variant in ``out_dir`` (what ``--report_only`` reports).

  Combinations are measured against the benchmark's dense model, once a group gave it.
  """
  rows, later = [], []
  for group in sorted(os.listdir(out_dir)):
    group_dir = os.path.join(out_dir, group)
    if group in RECIPE_GROUPS:
      for tag in sorted(os.listdir(group_dir)):
        if layout.is_amount_tag(tag):  # a run folder per amount
          rows += recipe_rows(group, os.path.join(group_dir, tag), float(tag) / 100)
      continue
    result = finished_result(group_dir)
    if result is None:
      continue
    if group in COMBINED:  # against the benchmark's dense model, once it is known
      later.append((group, result))
    else:
      rows += rows_of(group, result, group_dir=group_dir)
  reference = next((r for r in rows if r["variant"] == "dense"), None)
  for group, result in later:
    if reference is not None:
      rows += rows_of(group, result, reference={"perplexity": reference["ppl"],
                                                "valid_perplexity": reference.get("valid_ppl")},
                      group_dir=os.path.join(out_dir, group))
  return rows


def combination_source(row, rows):
  """The row of the variant a combination row compressed further, or None (not in ``rows``)."""
  source_group, source_variant = COMBINED[row["group"]][:2]
  return next((r for r in rows if r["group"] == source_group
               and r["variant"] == source_variant), None)


def embedder_removed(row, rows):
  """The fraction of the embedder's matrix parameters a row removed: zeros, or taken out by a
  shape-changing method, or both in a combination (the one axis of every method); None when
  the record lacks the matrix sizes.
  """
  sparsity = row.get("embedder_sparsity")
  if sparsity is None:
    return None
  removed = row.get("removed_fraction") or 0.0
  if row["group"] in COMBINED:  # what its source variant took out, then its zeros
    source = combination_source(row, rows)
    if source is None:
      return None
    removed = source.get("removed_fraction") or 0.0
  return 1 - (1 - removed) * (1 - sparsity)


def retraining_of(row, rows):
  """A row's retraining (or fine-tuning) budget; a combination's includes its source's."""
  if row.get("retraining") or row["group"] not in COMBINED:
    return row.get("retraining")
  source = combination_source(row, rows)
  return None if source is None else source.get("retraining")


def retrained_frontier(rows, max_epochs: float = 1.0):
  """[(removed, ppl mean, group)]: the best retrained variant per target sparsity among every
  retraining group within ``max_epochs`` of retraining (the dense control excluded)."""
  best = {}
  for r in rows:
    budget = r.get("retraining")
    removed = embedder_removed(r, rows)
    if (not pruned_and_retrained(r) or r["group"] in COMBINED or not r["target_sparsity"]
        or removed is None or not budget or budget["num_train_epochs"] > max_epochs + 1e-6):
      continue
    key = round(r["target_sparsity"], 6)
    if key not in best or r["ppl"]["mean"] < best[key][1]:
      best[key] = (removed, r["ppl"]["mean"], r["group"])
  return [best[k] for k in sorted(best)]
