"""Flags built from the method registry, and their reading back, for pipelines.compress.

* every option of every registered method (`prunelm_tf.compression.options.option_flags`;
  a name shared by methods, e.g. ``--allocation``, is one flag);
* the amount of compression under the name of its meaning (`prunelm_tf.compression.amounts`):
  ``--sparsity_sweep`` (and ``--final_sparsity``, tfmot's one-value form),
  ``--params_removed_sweep``, ``--layers_removed_sweep``, ``--bits_removed_sweep``; a method
  takes the one of its own amount, the others are refused naming it;
* the flags of earlier releases (`RETIRED`), refused with the form that replaces them.

Importing this module defines the flags; the library (``prunelm_tf``) never reads them.
"""

from typing import Dict, Tuple

from absl import app
from absl import flags
from absl import logging

from prunelm_tf.compression import parse_layer_sparsity, recipes
from prunelm_tf.compression.amounts import AMOUNTS, FINAL_SPARSITY, SPARSITY
from prunelm_tf.compression.methods import REGISTRY
from prunelm_tf.compression.options import nested_dict, option_flags

# Every option of every registered method, as a flag (shared names defined once).
METHOD_FLAGS = option_flags(list(REGISTRY.values()))
_BY_NAME = {s.name: s for s in METHOD_FLAGS}
# The amount flags, and the meaning each takes (--final_sparsity: a one-value sparsity).
AMOUNT_FLAGS = {**{a.flag: a for a in AMOUNTS}, FINAL_SPARSITY: SPARSITY}
# Without an amount flag, a method that removes an amount makes one variant at this value.
DEFAULT_AMOUNT = (0.5,)


def _per_method_help(spec) -> str:
  """The help of a flag whose methods differ in its values: each method's values and help."""
  parts = {}
  for method, default, choices, help_text in spec.per_method:
    values = ", ".join(f"{c} (default)" if c == default else c for c in choices or ())
    parts.setdefault((values, help_text), []).append(method)
  return " | ".join(f"--method={','.join(methods)}: {values}. {help_text}"
                    for (values, help_text), methods in parts.items())


def _takes(name: str, method: str) -> str:
  """``--allocation=VALUE (lowrank: energy, uniform; in a recipe --set lowrank.allocation=VALUE)``."""
  spec = _BY_NAME[name]
  choices = spec.choices_of(method)
  path = ".".join(next(p for m, p in spec.targets if m == method))
  return (f"--{name}=VALUE ({method}: {', '.join(choices)}; in a recipe "
          f"--set {method}.{path}=VALUE)")


_STAGES = ("two stages now: the one-shot method, then finetune (its zeros kept): "
           "--recipe=retrain_90 [--set obs.amount=0.8 --set obs.allocation=uniform], or "
           "--method=obs, then --method=finetune --model_dir=RUN/variants/NAME "
           "--teacher_dir=DENSE_RUN")
# Flags of earlier releases: given, they are refused with the form that replaces them.
RETIRED = {"init": "Retraining from a one-shot result is " + _STAGES,
           "init_allocation": "The one-shot stage's allocation is its own option: "
                              "--set obs.allocation=VALUE (or --allocation with --method=obs)",
           "init_stages": "Gradual one-shot pruning is stages one after the other with "
                          "rising amounts: --method=obs, then --method=finetune "
                          "--model_dir=RUN/variants/NAME, then --method=obs on that, ...; "
                          "or a recipe file of alternating obs and finetune stages",
           "init_sensitivity_max_level": "The one-shot stage's option: "
                                         "--set obs.sensitivity_max_level=VALUE",
           "finetune": "Fine-tuning is a stage of its own after the compression: "
                       "--recipe=lowrank_70_ft or structured_30_ft, or --method=finetune "
                       "--model_dir=RUN/variants/NAME --teacher_dir=DENSE_RUN",
           "threshold_allocation": "Every method's allocation is one flag: "
                                   + _takes("allocation", "threshold"),
           "lowrank_allocation": "Every method's allocation is one flag: "
                                 + _takes("allocation", "lowrank")}
for _name in RETIRED:
  (flags.DEFINE_bool if _name == "finetune" else flags.DEFINE_string)(
      _name, None, f"Removed: {RETIRED[_name]}.")

for _spec in METHOD_FLAGS:
  _methods = ",".join(sorted({m for m, _ in _spec.targets}))
  if _spec.same_for_all:
    _help = f"{_spec.help} [--method={_methods}]"
  else:  # one idea, values per method: each method checks its own (its Options)
    _help = _per_method_help(_spec)
  if _spec.kind is bool:
    flags.DEFINE_bool(_spec.name, _spec.default, _help)
  elif _spec.choices and _spec.same_for_all:
    flags.DEFINE_enum(_spec.name, _spec.default, list(_spec.choices), _help)
  elif _spec.kind is int:
    flags.DEFINE_integer(_spec.name, _spec.default, _help, lower_bound=_spec.lower,
                         upper_bound=_spec.upper)
  elif _spec.kind is float:
    flags.DEFINE_float(_spec.name, _spec.default, _help, lower_bound=_spec.lower,
                       upper_bound=_spec.upper)
  else:
    flags.DEFINE_string(_spec.name, _spec.default, _help)

for _amount in AMOUNTS:
  _with = ", ".join(sorted(n for n, m in REGISTRY.items() if m.amount == _amount))
  flags.DEFINE_list(_amount.flag, None, f"The amount of compression of --method={_with}: "
                    f"{_amount.meaning}. One variant per value, each in [0, 1), e.g. 0.3,0.5; "
                    f"default {DEFAULT_AMOUNT[0]}. Other methods take their own amount flag.")
flags.DEFINE_float(FINAL_SPARSITY, None, "tfmot's name for a single target sparsity: the same "
                   "as --sparsity_sweep=X (one variant). Do not combine the two.")


def refuse_retired() -> None:
  """Raises app.UsageError for a flag of an earlier release, giving its new form."""
  for name, instead in RETIRED.items():
    if flags.FLAGS[name].present:
      raise app.UsageError(f"--{name} was removed. {instead}.")


def given_amounts() -> Dict[str, Tuple[float, ...]]:
  """The amount flags given: flag name -> values (``--final_sparsity``: one value).

  Raises:
    app.UsageError: a value that is not a number, or --final_sparsity with --sparsity_sweep.
  """
  out = {}
  for name in AMOUNT_FLAGS:
    if not flags.FLAGS[name].present:
      continue
    value = flags.FLAGS[name].value
    if name == FINAL_SPARSITY:
      if flags.FLAGS[SPARSITY.flag].present:
        raise app.UsageError("--final_sparsity is a one-value --sparsity_sweep; give one of "
                             "them.")
      out[name] = (value,)
      continue
    try:
      out[name] = tuple(float(s) for s in value)
    except ValueError:
      raise app.UsageError(f"--{name} takes numbers, got {value}.") from None
  return out


def sweep(method_name: str) -> Tuple[float, ...]:
  """The amounts of --method=``method_name`` from the amount flag of its meaning.

  Raises:
    app.UsageError: an amount flag of another meaning (the message gives the method's own),
      or any amount for a method that removes nothing.
  """
  method = REGISTRY[method_name]
  given = given_amounts()
  if method.amount is None:
    if given:
      raise app.UsageError(f"--method={method_name} removes nothing (it trains what earlier "
                           f"stages made), so it takes no amount; leave out "
                           f"{', '.join('--' + n for n in given)}.")
    return (0.0,)
  for name, values in given.items():
    meaning = AMOUNT_FLAGS[name]
    if meaning != method.amount:
      users = ", ".join(sorted(n for n, m in REGISTRY.items() if m.amount == meaning))
      raise app.UsageError(
          f"--{name} gives a {meaning.name} (the amount of --method={users}); the amount of "
          f"--method={method_name} is {method.amount.name}, {method.amount.meaning}: give "
          f"--{method.amount.flag}={','.join(f'{v:g}' for v in values)}.")
  return next(iter(given.values()), DEFAULT_AMOUNT)


def method_options(method: str) -> dict:
  """The chosen method's options from its flags (others' flags are ignored with a warning)."""
  values = {}
  for spec in METHOD_FLAGS:
    paths = [path for m, path in spec.targets if m == method]
    value = flags.FLAGS[spec.name].value
    if not paths:
      if flags.FLAGS[spec.name].present:
        logging.warning("--%s is not an option of --method=%s; ignored.", spec.name, method)
      continue
    if value is None and not flags.FLAGS[spec.name].present:
      continue  # a flag whose methods default differently: the method keeps its own
    for path in paths:
      values[path] = value
  return nested_dict(values)


def configuring(*names: str) -> list:
  """The flags given among ``names``, --method, the run flags a recipe sets and the options."""
  candidates = (*names, "method", *recipes.FLAG_OVERRIDES, *(s.name for s in METHOD_FLAGS))
  return [n for n in candidates if flags.FLAGS[n].present]


def refuse_configuring(why: str, *names: str) -> None:
  """Raises app.UsageError naming the configuring flags given (`configuring`): ``why``."""
  given = configuring(*names)
  if given:
    raise app.UsageError(f"{why}; leave out {', '.join('--' + n for n in given)}.")


def recipe_overrides(recipe: recipes.Recipe) -> list:
  """The --set overrides that the flags given beside --recipe stand for.

  Raises:
    ValueError: a method flag or --method (the message gives the --set form), or an amount
      flag whose meaning is not the amount of the recipe's last stage that has one.
  """
  given = {n: flags.FLAGS[n].value for n in configuring()}
  if "layer_sparsity" in given:
    given["layer_sparsity"] = parse_layer_sparsity(given["layer_sparsity"])
  given.update(given_amounts())
  return recipes.overrides_from_flags(recipe, given, {s.name: s.targets for s in METHOD_FLAGS})
