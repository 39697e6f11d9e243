"""The recipe book: every recipe validates without running; --set and flags as overrides."""

import copy

import pytest

from prunelm_tf.compression import recipes
from prunelm_tf.compression.amounts import AMOUNTS
from prunelm_tf.compression.methods import REGISTRY

ONE_STAGE = {"purpose": "p", "applies_to": ["softmax"],
             "stages": [{"method": "obs", "options": {"allocation": "sensitivity"},
                         "amount": [0.5], "layer_sparsity": [["softmax", 0.0]]}],
             "run": {"calibration_sentences": 50}}
TWO_STAGES = {"purpose": "p", "applies_to": ["softmax"],
              "stages": [{"method": "structured", "amount": [0.3]},
                         {"method": "obs", "amount": [0.5, 0.7]}]}


@pytest.mark.parametrize("name", recipes.recipe_names())
def test_every_recipe_of_the_book_validates(name):
  recipe = recipes.load_recipe(name)
  assert recipe.purpose and recipe.stages
  assert set(recipe.applies_to) <= set(recipes.MODEL_KINDS)
  for k, stage in enumerate(recipe.stages):
    assert stage.method in REGISTRY
    config = recipes.stage_config(recipe, k, model_dir="m", train="t", calibration="c", eval="e")
    assert config.sparsity_sweep == stage.amount
  # The file form reads back as the same recipe.
  assert recipes.recipe_from_dict(name, recipe.to_dict()) == recipe
  assert recipes.describe(recipe).startswith(name)


def test_the_book_holds_each_family_in_both_model_kinds():
  book = {n: recipes.load_recipe(n) for n in recipes.recipe_names()}
  kinds = {(tuple(s.method for s in r.stages), k) for r in book.values() for k in r.applies_to}
  for methods in (("obs",), ("retrain",), ("lowrank",), ("cluster",), ("obs", "finetune"),
                  ("structured", "finetune")):
    assert (methods, "softmax") in kinds and (methods, "softmax_less") in kinds, methods
  assert any(len(r.stages) > 1 for r in book.values())
  assert [m for r in book.values() for m in r.measured]  # some recipe records its figures


def test_unknown_recipe_names_the_book():
  with pytest.raises(ValueError, match="not in the recipe book; choose from .*obs_50"):
    recipes.load_recipe("obs_51")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(colour="red"), r"unknown keys \['colour'\]"),
    (lambda d: d["stages"][0].update(optons={}), r"unknown keys \['optons'\]"),
    (lambda d: d["stages"][0]["options"].update(allocaton="uniform"), "allocaton"),
    (lambda d: d["stages"][0]["options"].update(allocation="nope"), "allocation"),
    (lambda d: d["stages"][0].update(method="prune_it"), "not a compression method"),
    (lambda d: d["stages"][0].update(amount=[1.0]), r"amount must be .* in \[0, 1\)"),
    (lambda d: d["stages"][0].update(amount=[0.5, 0.5]), "distinct"),
    (lambda d: d["stages"][0].update(layer_sparsity=[["softmax"]]), "pairs"),
    (lambda d: d.update(applies_to=["phone"]), "not a model kind"),
    (lambda d: d.update(stages=[]), "'stages' is missing or empty"),
    (lambda d: d["run"].update(model_dir="x"), r"run: unknown keys \['model_dir'\]"),
    (lambda d: d["run"].update(calibration_sentences=0), "calibration_sentences"),
])
def test_invalid_recipes_are_refused_with_the_key(change, message):
  d = copy.deepcopy(ONE_STAGE)
  change(d)
  with pytest.raises(ValueError, match=message):
    recipes.recipe_from_dict("r", d)


def test_only_the_last_stage_sweeps():
  d = copy.deepcopy(TWO_STAGES)
  recipes.recipe_from_dict("two", d)
  d["stages"][0]["amount"] = [0.3, 0.4]
  with pytest.raises(ValueError, match="only the last stage may have several amounts"):
    recipes.recipe_from_dict("two", d)


def test_a_softmax_less_recipe_cannot_need_a_softmax():
  d = {"purpose": "p", "applies_to": ["softmax_less"],
       "stages": [{"method": "retrain", "options": {"retrain": {"objective": "kd"}}}]}
  with pytest.raises(ValueError, match="need the model's softmax"):
    recipes.recipe_from_dict("kd", d)
  d["stages"][0]["options"]["retrain"]["objective"] = "distill"
  assert recipes.recipe_from_dict("distill", d).applies_to == ("softmax_less",)


def test_overrides_set_options_amounts_run_settings_and_matrices():
  recipe = recipes.recipe_from_dict("two", TWO_STAGES)
  out = recipes.apply_overrides(recipe, [
      "obs.allocation=sensitivity", "1.importance=obs", "structured.damp=0.02",
      "obs.amount=0.6,0.8", "run.calibration_sentences=7", 'obs.layer_sparsity=[["softmax", 0]]'])
  assert out.stages[1].options["allocation"] == "sensitivity"
  assert out.stages[0].options["importance"] == "obs"
  assert out.stages[0].options["damp"] == 0.02
  assert out.stages[1].amount == (0.6, 0.8)
  assert out.stages[1].layer_sparsity == (("softmax", 0.0),)
  assert out.run["calibration_sentences"] == 7
  assert recipe.stages[1].amount == (0.5, 0.7)  # the book's recipe is left as it was


@pytest.mark.parametrize("override, message", [
    ("obs.alocation=uniform", "alocation"),
    ("obs.allocation=nope", "allocation"),
    ("lowrank.criterion=svd", "has no stage 'lowrank'"),
    ("3.damp=0.1", "has no stage '3'"),
    ("obs#2.damp=0.1", "has no stage 'obs#2'"),
    ("obs.allocation", "write STAGE.OPTION=VALUE"),
    ("allocation=uniform", "write STAGE.OPTION=VALUE"),
    ("run.model_dir=x", "run settings are"),
    ("obs.amount=0.5,abc", "amount must be numbers"),
])
def test_bad_overrides_are_refused(override, message):
  with pytest.raises(ValueError, match=message):
    recipes.apply_overrides(recipes.recipe_from_dict("two", TWO_STAGES), [override])


def test_flags_beside_a_recipe_become_overrides_and_method_flags_are_refused():
  recipe = recipes.recipe_from_dict("two", TWO_STAGES)
  given = {"tflite_quantization": ["none"], "sparsity_sweep": (0.6,),
           "layer_sparsity": (("softmax", 0.0),), "export_elmo": True}
  overrides = recipes.overrides_from_flags(recipe, given, {})
  out = recipes.apply_overrides(recipe, overrides)
  assert out.run["tflite_quantization"] == ["none"] and out.run["export_elmo"] is True
  assert out.stages[1].amount == (0.6,) and out.stages[1].layer_sparsity == (("softmax", 0.0),)
  targets = {"obs_damp": (("obs", ("damp",)), ("structured", ("damp",)))}
  with pytest.raises(ValueError, match=r"--set obs.damp=VALUE or --set structured.damp=VALUE"):
    recipes.overrides_from_flags(recipe, {"obs_damp": 0.1}, targets)
  with pytest.raises(ValueError, match="--method and --recipe exclude each other"):
    recipes.overrides_from_flags(recipe, {"method": "obs"}, {})


def test_a_recipe_refuses_a_model_kind_it_does_not_apply_to():
  recipe = recipes.load_recipe("obs_50")
  recipes.check_applies(recipe, True, "the model")
  with pytest.raises(ValueError, match="applies to .*softmax-less; choose a recipe for it: .*"
                                       "obs_50_elmo"):
    recipes.check_applies(recipe, False, "ELMo weights.hdf5")


def test_a_stage_that_needs_a_corpus_names_the_flag():
  recipe = recipes.load_recipe("retrain_90")
  with pytest.raises(ValueError, match="set --train"):
    recipes.stage_config(recipe, 1, model_dir="m", calibration="c", eval="e")


def test_each_method_declares_what_its_amount_means():
  """One name per meaning: the amount of every method is one of amounts.AMOUNTS (or none)."""
  meanings = {name: (m.amount.name if m.amount else None) for name, m in REGISTRY.items()}
  assert meanings == {"threshold": "sparsity", "wanda": "sparsity", "obs": "sparsity",
                      "retrain": "sparsity", "finetune": None, "lowrank": "params_removed",
                      "structured": "params_removed", "layers": "layers_removed",
                      "cluster": "bits_removed"}
  assert all(m.amount in AMOUNTS for m in REGISTRY.values() if m.amount)
  assert len({a.flag for a in AMOUNTS}) == len(AMOUNTS)  # one flag per meaning


def test_the_listing_names_each_stages_amount_by_its_meaning():
  assert recipes.describe(recipes.load_recipe("retrain_90")).splitlines()[0] == (
      "retrain_90  [softmax]  obs sparsity 0.9 -> finetune")
  assert recipes.describe(recipes.load_recipe("lowrank_cluster_ft")).splitlines()[0] == (
      "lowrank_cluster_ft  [softmax]  lowrank params_removed 0.5 -> cluster bits_removed 0.5 "
      "-> finetune")
  legend = recipes.amounts_legend()
  for amount in AMOUNTS:
    assert f"  {amount.name} (--{amount.flag}): {amount.meaning}" in legend


def test_an_amount_flag_beside_a_recipe_must_have_its_last_stages_meaning():
  recipe = recipes.recipe_from_dict("two", TWO_STAGES)  # structured (params_removed) -> obs
  assert recipes.overrides_from_flags(recipe, {"final_sparsity": 0.8}, {}) == ["2.amount=0.8"]
  lowrank = recipes.load_recipe("lowrank_70_ft")  # lowrank -> finetune
  assert recipes.overrides_from_flags(lowrank, {"params_removed_sweep": (0.5, 0.6)}, {}) == [
      "1.amount=0.5,0.6"]
  with pytest.raises(ValueError, match=r"--sparsity_sweep gives a sparsity; the amount of stage "
                                       r"1 \(lowrank\) of --recipe=lowrank_70_ft is "
                                       r"params_removed.*give --params_removed_sweep=0.5"):
    recipes.overrides_from_flags(lowrank, {"sparsity_sweep": (0.5,)}, {})
