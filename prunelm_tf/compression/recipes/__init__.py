"""The recipe book: named, validated compressions stored as data files beside this module.

A recipe (``<name>.json`` in this folder) is what a benchmark found worth shipping, in the
form a user reruns: one line of purpose, the model kinds it applies to, a list of stages
(each a registered compression method with its options and its amount of compression)
and the run settings it needs; optionally the figures it was measured at, with the model,
the command and where the figure comes from. ``pipelines.compress --recipe=NAME`` runs it
on the user's model and corpora; ``--set STAGE.OPTION=VALUE`` changes any option
(validated, unknown keys refused, Model Garden's ``--params_override``); the final config
of every run is written to its folder, so ``--config_file=RUN/config.json`` repeats it.

File layout (every key is checked; unknown keys are refused)::

  {"purpose": "one line",
   "applies_to": ["softmax", "softmax_less"],   # a biLM with an LM head / a released ELMo
   "stages": [{"method": "obs", "options": {...}, "amount": [0.5],
               "layer_sparsity": [["softmax", 0.0]]}],  # optional, per stage
   "run": {"calibration_sentences": 300, ...},  # CompressConfig fields, see RUN_FIELDS
   "measured": [{"model": "...", "amount": 0.5, "figures": {...}, "source": "...",
                 "command": "..."}]}

A stage's ``amount`` is its sweep in its method's meaning (`amounts`, the method's
``amount``): a sparsity (obs, threshold, ...: ``--sparsity_sweep``), a fraction of parameters
removed (lowrank, structured: ``--params_removed_sweep``), of LSTM layers removed (layers)
or of int8 bits removed (cluster); ``--list_recipes`` shows each stage's (``obs sparsity
0.9``). A stage that only trains (``finetune``) has none. Its ``layer_sparsity`` (``--layer_sparsity``) sets or skips
matrices by name, e.g. ``[["softmax", 0.0]]`` keeps the softmax of a model that has one dense. A recipe of several stages runs them one after the other,
each on the previous stage's variant (`run_stages`); every stage but the last has one amount.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from prunelm_tf.compression.amounts import AMOUNTS, FINAL_SPARSITY, SPARSITY
from prunelm_tf.compression.config import CompressConfig
from prunelm_tf.compression.methods import get_method
from prunelm_tf.compression.options import options_record

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
# The kinds of model a recipe applies to: a biLM with its softmax (perplexity, KD), and a
# softmax-less one (a released ELMo weight file: representation distillation only).
MODEL_KINDS = ("softmax", "softmax_less")
# CompressConfig fields a recipe may set: how it compresses and exports. The inputs (model,
# corpora, run folder) and the amount of data read are the user's, given as flags.
RUN_FIELDS = ("calibration_sentences", "tflite_quantization", "num_parity_sentences",
              "tflite_int8_max_tokens", "export_elmo", "seed")
_RECIPE_KEYS = ("purpose", "applies_to", "stages", "run", "measured")
_STAGE_KEYS = ("method", "options", "amount", "layer_sparsity")
_MEASURED_KEYS = ("model", "amount", "figures", "source", "command")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of a recipe: a registered method, its options and its amount."""

  # A registered method (prunelm_tf.compression.methods.REGISTRY).
  method: str
  # The method's options in their JSON form (`options_record`), validated.
  options: Mapping[str, Any]
  # The stage's sweep in its method's meaning (its ``amount``: --sparsity_sweep,
  # --params_removed_sweep, ...): one variant per value, each in [0, 1).
  amount: Tuple[float, ...]
  # The stage's --layer_sparsity: ((name pattern, sparsity), ...); 0 skips a matrix.
  layer_sparsity: Tuple[Tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A named compression: its purpose, the models it applies to, its stages and settings."""

  name: str
  # One line: what it does and what it costs.
  purpose: str
  # A subset of MODEL_KINDS.
  applies_to: Tuple[str, ...]
  stages: Tuple[Stage, ...]
  # CompressConfig fields (RUN_FIELDS) shared by every stage.
  run: Mapping[str, Any]
  # Figures it was measured at: {"model", "amount", "figures", "source", "command"} each.
  measured: Tuple[Mapping[str, Any], ...] = ()

  def to_dict(self) -> Dict[str, Any]:
    """The recipe's file form (what `recipe_from_dict` reads back)."""
    return json.loads(json.dumps({
        "purpose": self.purpose, "applies_to": list(self.applies_to),
        "stages": [dict({"method": s.method, "options": dict(s.options)},
                        **({"amount": list(s.amount)} if get_method(s.method).has_amount
                           else {}),
                        **({"layer_sparsity": [list(p) for p in s.layer_sparsity]}
                           if s.layer_sparsity else {}))
                   for s in self.stages],
        "run": dict(self.run), "measured": [dict(m) for m in self.measured]}))


def _unknown(what: str, keys, known: Sequence[str]) -> None:
  unknown = sorted(set(keys) - set(known))
  if unknown:
    raise ValueError(f"{what}: unknown keys {unknown}; known: {list(known)}.")


def _amount(what: str, value) -> Tuple[float, ...]:
  values = value if isinstance(value, (list, tuple)) else [value]
  try:
    amount = tuple(float(v) for v in values)
  except (TypeError, ValueError):
    raise ValueError(f"{what}: amount must be numbers in [0, 1), got {value!r}.") from None
  if not amount or any(not 0.0 <= a < 1.0 for a in amount) or len(set(amount)) != len(amount):
    raise ValueError(f"{what}: amount must be one or more distinct numbers in [0, 1) (the "
                     f"fraction removed), got {value!r}.")
  return amount


def recipe_from_dict(name: str, d: Mapping[str, Any]) -> Recipe:
  """Validates a recipe's file form; every method option goes through its method's checks.

  Raises:
    ValueError: an unknown key, method, option or model kind, an amount out of range, a
      stage before the last with several amounts, or an invalid run setting; the message
      names the recipe and the key.
  """
  if not isinstance(d, Mapping):
    raise ValueError(f"recipe {name}: a recipe is a JSON object, got {type(d).__name__}.")
  _unknown(f"recipe {name}", d, _RECIPE_KEYS)
  for key in ("purpose", "applies_to", "stages"):
    if not d.get(key):
      raise ValueError(f"recipe {name}: {key!r} is missing or empty.")
  applies_to = tuple(d["applies_to"])
  bad = sorted(set(applies_to) - set(MODEL_KINDS))
  if bad:
    raise ValueError(f"recipe {name}: applies_to {bad} is not a model kind; choose from "
                     f"{list(MODEL_KINDS)}.")
  stages = []
  for k, raw in enumerate(d["stages"]):
    where = f"recipe {name}, stage {k + 1}"
    if not isinstance(raw, Mapping):
      raise ValueError(f"{where}: a stage is an object with {list(_STAGE_KEYS)}.")
    _unknown(where, raw, _STAGE_KEYS)
    method = get_method(str(raw.get("method", "")))
    try:
      options = method.options_from_dict(raw.get("options") or {})
    except (TypeError, ValueError) as e:
      raise ValueError(f"{where} ({method.name}): {e}") from None
    if method.has_amount:
      amount = _amount(where, raw.get("amount", [0.5]))
    elif raw.get("amount", [0.0]) not in ([0.0], [0], 0, 0.0):
      raise ValueError(f"{where} ({method.name}): this stage removes nothing and takes no "
                       f"amount; leave 'amount' out (got {raw['amount']!r}).")
    else:
      amount = (0.0,)
    if k < len(d["stages"]) - 1 and len(amount) != 1:
      raise ValueError(f"{where}: only the last stage may have several amounts (the next "
                       f"stage compresses this one's variant), got {list(amount)}.")
    if "softmax_less" in applies_to and method.needs(options).softmax:
      raise ValueError(f"{where} ({method.name}): these options need the model's softmax, so "
                       "the recipe cannot apply to softmax_less models (a released ELMo has "
                       "none); use a representation objective (distill) or drop softmax_less.")
    try:
      layer_sparsity = tuple((str(p), float(v)) for p, v in raw.get("layer_sparsity") or ())
    except (TypeError, ValueError):
      raise ValueError(f"{where}: layer_sparsity is a list of [pattern, sparsity] pairs, got "
                       f"{raw.get('layer_sparsity')!r}.") from None
    stages.append(Stage(method.name, options_record(options), amount, layer_sparsity))
  run = dict(d.get("run") or {})
  _unknown(f"recipe {name}, run", run, RUN_FIELDS)
  measured = tuple(d.get("measured") or ())
  for m in measured:
    _unknown(f"recipe {name}, measured", m, _MEASURED_KEYS)
  recipe = Recipe(name, str(d["purpose"]), applies_to, tuple(stages), run, measured)
  for k, stage in enumerate(recipe.stages):  # the run settings checked as CompressConfig does
    try:
      stage_config(recipe, k, model_dir="model", train="train", calibration="calibration")
    except (TypeError, ValueError) as e:
      raise ValueError(f"recipe {name}, stage {k + 1} ({stage.method}): {e}") from None
  return recipe


def recipe_names() -> List[str]:
  """Every recipe of the book, sorted."""
  return sorted(n[:-len(".json")] for n in os.listdir(RECIPE_DIR) if n.endswith(".json"))


def load_recipe(name: str) -> Recipe:
  """The book's recipe ``name``, validated.

  Raises:
    ValueError: no such recipe (the message lists the book), or an invalid file.
  """
  if name not in recipe_names():
    raise ValueError(f"--recipe={name!r} is not in the recipe book; choose from "
                     f"{', '.join(recipe_names())} (python -m pipelines.compress "
                     "--list_recipes shows what each does).")
  path = os.path.join(RECIPE_DIR, f"{name}.json")
  try:
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON ({e}).") from None
  return recipe_from_dict(name, d)


def _parse_value(text: str) -> Any:
  """A --set value: JSON if it parses (numbers, true/false, lists, objects), else the string."""
  try:
    return json.loads(text)
  except ValueError:
    return text


def apply_overrides(recipe: Recipe, overrides: Sequence[str]) -> Recipe:
  """The recipe with ``--set`` overrides applied, validated again.

  Each override is ``STAGE.OPTION[.SUBOPTION]=VALUE`` where STAGE names a stage by its
  method (``obs``, ``retrain``; ``retrain#2`` for the second retrain stage) or by its
  1-based position, ``STAGE.amount=0.7,0.9`` sets its amounts, and ``run.FIELD=VALUE``
  sets a run setting. VALUE is JSON when it parses (``0.01``, ``true``, ``[1, 2]``), else
  a string.

  Raises:
    ValueError: a malformed override, an unknown stage, option or field (strict, like
      Model Garden's params override), or a value its method refuses.
  """
  d = recipe.to_dict()
  for text in overrides:
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or len(path) < 2 or not all(path):
      raise ValueError(f"--set {text!r}: write STAGE.OPTION=VALUE (e.g. obs.allocation=uniform, "
                       "retrain.retrain.learning_rate=0.005, obs.amount=0.6,0.7) or "
                       "run.FIELD=VALUE (e.g. run.calibration_sentences=500).")
    if path[0] == "run":
      if len(path) != 2 or path[1] not in RUN_FIELDS:
        raise ValueError(f"--set {text!r}: run settings are {list(RUN_FIELDS)}.")
      d["run"][path[1]] = _parse_value(value)
      continue
    stage = _find_stage(recipe, path[0], text)
    if path[1:] == ["amount"]:
      d["stages"][stage]["amount"] = [_parse_value(v) for v in value.split(",")]
      continue
    if path[1:] == ["layer_sparsity"]:
      d["stages"][stage]["layer_sparsity"] = _parse_value(value)
      continue
    node = d["stages"][stage]["options"]
    for part in path[1:-1]:
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        raise ValueError(f"--set {text!r}: {part} is not a group of options.")
    node[path[-1]] = _parse_value(value)
  return recipe_from_dict(recipe.name, d)


def _find_stage(recipe: Recipe, label: str, text: str) -> int:
  """The index of the stage ``label`` names (method, method#N, or 1-based position)."""
  if label.isdigit():
    if 1 <= int(label) <= len(recipe.stages):
      return int(label) - 1
  else:
    method, _, nth = label.partition("#")
    matches = [k for k, s in enumerate(recipe.stages) if s.method == method]
    index = int(nth) - 1 if nth.isdigit() else 0
    if matches and 0 <= index < len(matches) and (nth == "" or nth.isdigit()):
      return matches[index]
  raise ValueError(f"--set {text!r}: recipe {recipe.name} has no stage {label!r}; its stages "
                   f"are {[f'{k + 1}:{s.method}' for k, s in enumerate(recipe.stages)]}.")


# Flags of pipelines.compress a recipe sets itself; given beside --recipe, each becomes the
# --set override on the right (an amount flag: the amount of the last stage that has one).
FLAG_OVERRIDES = {f: f"run.{f}" for f in RUN_FIELDS}
FLAG_OVERRIDES.update({a.flag: "LAST.amount" for a in AMOUNTS})
FLAG_OVERRIDES.update({FINAL_SPARSITY: "LAST.amount", "layer_sparsity": "LAST.layer_sparsity"})
# The meaning of each amount flag (--final_sparsity: a one-value sparsity).
_FLAG_AMOUNTS = {**{a.flag: a for a in AMOUNTS}, FINAL_SPARSITY: SPARSITY}


def overrides_from_flags(recipe: Recipe, given: Mapping[str, Any],
                         option_targets: Mapping[str, Sequence[Tuple[str, Tuple[str, ...]]]]
                         ) -> List[str]:
  """The --set overrides that flags given beside --recipe stand for.

  Args:
    recipe: the recipe.
    given: flag name -> value of the flags the user gave (inputs left out); run flags
      (``FLAG_OVERRIDES``) become overrides: ``--tflite_quantization=none`` is
      ``run.tflite_quantization=["none"]``, an amount flag (``--sparsity_sweep``,
      ``--params_removed_sweep``, ..., values already parsed) the amount of the last stage
      that has one, ``--layer_sparsity`` (already parsed into pairs) that stage's.
    option_targets: method option flag -> ((method, option path), ...), the flags that
      set a method's options.

  Raises:
    ValueError: a method flag (``--learning_rate``) or ``--method``: a recipe's options
      change with --set only; the message gives the --set form. An amount flag of another
      meaning than that stage's amount (``--sparsity_sweep`` for a lowrank stage): the
      message gives the flag of its meaning.
  """
  methods = [s.method for s in recipe.stages]
  out = []
  for flag, value in given.items():
    if flag == "method":
      raise ValueError("--method and --recipe exclude each other: a recipe names its methods.")
    if flag in option_targets:
      forms = [f"--set {m}.{'.'.join(p)}=VALUE" for m, p in option_targets[flag] if m in methods]
      raise ValueError(f"--{flag} is a method flag; with --recipe={recipe.name} change options "
                       f"with {' or '.join(forms) or '--set STAGE.OPTION=VALUE'}.")
    if flag not in FLAG_OVERRIDES:
      raise ValueError(f"--{flag} does not apply with --recipe.")
    with_amount = [k + 1 for k, m in enumerate(methods) if get_method(m).has_amount]
    last = with_amount[-1] if with_amount else len(methods)
    target = FLAG_OVERRIDES[flag].replace("LAST", str(last))
    if target.endswith(".amount"):
      values = value if isinstance(value, (list, tuple)) else [value]
      value = ",".join(str(v) for v in values)
      own = get_method(methods[last - 1]).amount
      if own is not None and _FLAG_AMOUNTS[flag] != own:
        raise ValueError(
            f"--{flag} gives a {_FLAG_AMOUNTS[flag].name}; the amount of stage {last} "
            f"({methods[last - 1]}) of --recipe={recipe.name} is {own.name}, {own.meaning}: "
            f"give --{own.flag}={value} (or --set {last}.amount={value}).")
      out.append(f"{target}={value}")
    else:
      out.append(f"{target}={json.dumps(value)}")
  return out


def stage_config(recipe: Recipe, stage: int, **inputs: Any) -> CompressConfig:
  """The CompressConfig of stage ``stage`` (0-based) on the user's inputs.

  Args:
    recipe: the recipe.
    stage: which stage.
    **inputs: CompressConfig input fields (model_dir or options_file + weight_file, train,
      eval, valid, calibration, max_sentences, teacher_dir); a stage that does not read a
      corpus does not get it.

  Raises:
    ValueError: the stage needs an input that is missing (e.g. --train for a method that
      retrains), or a setting out of range.
  """
  s = recipe.stages[stage]
  run = dict(recipe.run)
  method = get_method(s.method)
  needs = method.needs(method.options_from_dict(s.options))
  inputs = dict(inputs)
  if not needs.train:
    inputs.pop("train", None)
    inputs.pop("teacher_dir", None)
  if not needs.calibration and "int8" not in run.get("tflite_quantization", ()):
    inputs.pop("calibration", None)
  return CompressConfig(method=s.method, method_options=dict(s.options),
                        sparsity_sweep=s.amount, layer_sparsity=s.layer_sparsity, **run, **inputs)


def describe(recipe: Recipe) -> str:
  """Lines for --list_recipes: name, kinds, stages, purpose and the measured figures."""
  stages = " -> ".join(
      f"{s.method} {get_method(s.method).amount.name} {'/'.join(f'{a:g}' for a in s.amount)}"
      if get_method(s.method).has_amount else s.method for s in recipe.stages)
  lines = [f"{recipe.name}  [{', '.join(recipe.applies_to)}]  {stages}", f"    {recipe.purpose}"]
  for m in recipe.measured:
    figures = ", ".join(f"{k} {v}" for k, v in (m.get("figures") or {}).items())
    lines.append(f"    measured: {m.get('model', '?')} at {m.get('amount', '?')}: {figures} "
                 f"({m.get('source', 'source not recorded')})")
  if not recipe.measured:
    lines.append("    measured: not yet")
  return "\n".join(lines)


def amounts_legend() -> str:
  """What each amount name of --list_recipes means (`amounts.AMOUNTS`), one line each."""
  return "\n".join(["Each stage's amount is named by its meaning:"] +
                   [f"  {a.name} (--{a.flag}): {a.meaning}" for a in AMOUNTS])


def listing() -> str:
  """What --list_recipes prints: what the amount names mean, then every recipe (`describe`)."""
  return "\n\n".join([amounts_legend()] + [describe(load_recipe(n)) for n in recipe_names()])


def model_kind(has_softmax: bool) -> str:
  return MODEL_KINDS[0] if has_softmax else MODEL_KINDS[1]


def check_applies(recipe: Recipe, has_softmax: bool, description: str) -> None:
  """Refuses a recipe for a model kind it does not apply to, naming recipes that do."""
  kind = model_kind(has_softmax)
  if kind not in recipe.applies_to:
    others = [n for n in recipe_names() if kind in load_recipe(n).applies_to]
    raise ValueError(f"--recipe={recipe.name} applies to {list(recipe.applies_to)} models, and "
                     f"{description} is {kind.replace('_', '-')}; choose a recipe for it: "
                     f"{', '.join(others)}.")

