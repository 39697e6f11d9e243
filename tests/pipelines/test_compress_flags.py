"""pipelines.compress's flags: one name for one idea.

``--allocation`` is one flag of every method that allocates; the amount of compression is
taken under the name of its meaning (``--sparsity_sweep``, ``--params_removed_sweep``, ...);
the flags of earlier releases are refused with the form that replaces them. The flags are
read back as ``main`` does (`pipelines.method_flags`), in one subprocess: an entry point's
flags are defined at import, so they are never imported into the test process.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# Flags of earlier releases that README, flag files, docs or scripts may still hold: each is
# refused with the form that replaces it.
RETIRED = ("init", "init_allocation", "init_stages", "init_sensitivity_max_level", "finetune",
           "threshold_allocation", "lowrank_allocation")

# Reads the flags of each case as pipelines.compress's main does, into a CompressConfig.
_PROBE = r'''
import json, sys
from absl import app, flags
import pipelines.compress  # noqa: F401  (defines the flags)
from pipelines import method_flags
from prunelm_tf.compression import CompressConfig, recipes
out = {}
for name, argv, method, recipe in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["compress", *argv])
  try:
    method_flags.refuse_retired()
    if recipe:
      out[name] = {"overrides": method_flags.recipe_overrides(recipes.load_recipe(recipe))}
      continue
    options = method_flags.method_options(method)
    config = CompressConfig(model_dir="m", eval="e", calibration="c", train="t", method=method,
                            method_options=options, sparsity_sweep=method_flags.sweep(method))
    out[name] = {"options": options, "sweep": list(config.sparsity_sweep),
                 "allocation": getattr(config.method_options, "allocation", None)}
  except (app.UsageError, ValueError) as e:
    out[name] = {"error": str(e)}
out["retired"] = sorted(method_flags.RETIRED)
print("PROBE" + json.dumps(out))
'''

_CASES = [
    # --allocation reaches every method that allocates; absent, each keeps its own default.
    ("threshold_sens", ["--allocation=sensitivity"], "threshold", None),
    ("lowrank_uniform", ["--method=lowrank", "--allocation=uniform"], "lowrank", None),
    ("lowrank_default", ["--method=lowrank"], "lowrank", None),
    ("obs_default", ["--method=obs"], "obs", None),
    ("obs_osens", ["--method=obs", "--allocation=obs_sensitivity"], "obs", None),
    # A value of another method's allocation is refused naming this method's.
    ("obs_energy", ["--method=obs", "--allocation=energy"], "obs", None),
    ("lowrank_sens", ["--method=lowrank", "--allocation=sensitivity"], "lowrank", None),
    ("wanda_osens", ["--method=wanda", "--allocation=obs_sensitivity"], "wanda", None),
    # The amount under the name of its meaning; another meaning's flag is refused.
    ("lowrank_params", ["--method=lowrank", "--params_removed_sweep=0.3,0.6"], "lowrank", None),
    ("layers_layers", ["--method=layers", "--layers_removed_sweep=0.5"], "layers", None),
    ("cluster_bits", ["--method=cluster", "--bits_removed_sweep=0.5,0.625"], "cluster", None),
    ("threshold_final", ["--final_sparsity=0.8"], "threshold", None),
    ("lowrank_no_amount", ["--method=lowrank"], "lowrank", None),
    ("lowrank_sparsity", ["--method=lowrank", "--sparsity_sweep=0.5"], "lowrank", None),
    ("obs_params", ["--method=obs", "--params_removed_sweep=0.5"], "obs", None),
    ("cluster_final", ["--method=cluster", "--final_sparsity=0.5"], "cluster", None),
    ("structured_bits", ["--method=structured", "--bits_removed_sweep=0.5"], "structured", None),
    ("finetune_amount", ["--method=finetune", "--sparsity_sweep=0"], "finetune", None),
    ("final_and_sweep", ["--final_sparsity=0.8", "--sparsity_sweep=0.5"], "threshold", None),
    # Beside a recipe, the amount flag of the meaning of its last stage with an amount.
    ("recipe_params", ["--params_removed_sweep=0.6"], None, "lowrank_50"),
    ("recipe_sparsity", ["--sparsity_sweep=0.6"], None, "lowrank_50"),
    ("recipe_obs", ["--final_sparsity=0.8"], None, "retrain_90"),
    ("recipe_allocation", ["--allocation=uniform"], None, "lowrank_50"),
] + [(f"retired_{name}", [f"--{name}" if name == "finetune" else f"--{name}=x"], "threshold",
      None) for name in RETIRED]


@pytest.fixture(scope="module")
def probe():
  result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(_CASES)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.split("PROBE", 1)[1])


def test_allocation_is_one_flag_that_reaches_each_methods_option(probe):
  assert probe["threshold_sens"]["options"]["allocation"] == "sensitivity"
  assert probe["threshold_sens"]["allocation"] == "sensitivity"
  assert probe["lowrank_uniform"]["options"]["allocation"] == "uniform"
  assert probe["lowrank_uniform"]["allocation"] == "uniform"
  assert probe["obs_osens"]["allocation"] == "obs_sensitivity"
  # Not given: each method keeps its own default (lowrank's is energy, obs's uniform).
  assert "allocation" not in probe["lowrank_default"]["options"]
  assert probe["lowrank_default"]["allocation"] == "energy"
  assert probe["obs_default"]["allocation"] == "uniform"


def test_an_allocation_of_another_method_is_refused_naming_this_methods(probe):
  assert probe["obs_energy"]["error"] == (
      "--allocation='energy' is not a choice of --method=obs: it takes uniform, sensitivity, "
      "obs_sensitivity.")
  assert probe["lowrank_sens"]["error"] == (
      "--allocation='sensitivity' is not a choice of --method=lowrank: it takes energy, "
      "uniform.")
  assert probe["wanda_osens"]["error"].startswith(
      "--allocation='obs_sensitivity' is not a choice of --method=wanda: it takes uniform, "
      "sensitivity; obs_sensitivity needs --method=obs")


def test_each_method_takes_the_amount_of_its_meaning(probe):
  assert probe["lowrank_params"]["sweep"] == [0.3, 0.6]
  assert probe["layers_layers"]["sweep"] == [0.5]
  assert probe["cluster_bits"]["sweep"] == [0.5, 0.625]
  assert probe["threshold_final"]["sweep"] == [0.8]
  assert probe["lowrank_no_amount"]["sweep"] == [0.5]  # the default amount


def test_an_amount_flag_of_another_meaning_is_refused_with_the_right_flag(probe):
  assert probe["lowrank_sparsity"]["error"] == (
      "--sparsity_sweep gives a sparsity (the amount of --method=obs, retrain, threshold, "
      "wanda); the amount of --method=lowrank is params_removed, the fraction of the "
      "compressed matrices' parameters removed: the model gets physically smaller: give "
      "--params_removed_sweep=0.5.")
  assert probe["obs_params"]["error"].endswith("give --sparsity_sweep=0.5.")
  assert "the amount of --method=obs is sparsity" in probe["obs_params"]["error"]
  assert probe["cluster_final"]["error"].startswith("--final_sparsity gives a sparsity")
  assert probe["cluster_final"]["error"].endswith("give --bits_removed_sweep=0.5.")
  assert probe["structured_bits"]["error"].endswith("give --params_removed_sweep=0.5.")
  assert probe["finetune_amount"]["error"] == (
      "--method=finetune removes nothing (it trains what earlier stages made), so it takes no "
      "amount; leave out --sparsity_sweep.")
  assert probe["final_and_sweep"]["error"].startswith("--final_sparsity is a one-value "
                                                      "--sparsity_sweep")


def test_an_amount_flag_beside_a_recipe_is_its_last_amount_of_the_same_meaning(probe):
  assert probe["recipe_params"]["overrides"] == ["1.amount=0.6"]
  assert probe["recipe_obs"]["overrides"] == ["1.amount=0.8"]  # obs, before finetune
  assert probe["recipe_sparsity"]["error"] == (
      "--sparsity_sweep gives a sparsity; the amount of stage 1 (lowrank) of "
      "--recipe=lowrank_50 is params_removed, the fraction of the compressed matrices' "
      "parameters removed: the model gets physically smaller: give --params_removed_sweep=0.6 "
      "(or --set 1.amount=0.6).")
  assert probe["recipe_allocation"]["error"] == (
      "--allocation is a method flag; with --recipe=lowrank_50 change options with "
      "--set lowrank.allocation=VALUE.")


@pytest.mark.parametrize("name", RETIRED)
def test_every_flag_of_an_earlier_release_is_refused_with_its_new_form(probe, name):
  assert name in probe["retired"]
  error = probe[f"retired_{name}"]["error"]
  assert error.startswith(f"--{name} was removed. ")
  assert "--set" in error or "--recipe" in error or "--method" in error


def test_the_allocation_flags_of_each_method_are_refused_with_allocation(probe):
  assert probe["retired_threshold_allocation"]["error"] == (
      "--threshold_allocation was removed. Every method's allocation is one flag: "
      "--allocation=VALUE (threshold: uniform, sensitivity; in a recipe --set "
      "threshold.allocation=VALUE).")
  assert probe["retired_lowrank_allocation"]["error"] == (
      "--lowrank_allocation was removed. Every method's allocation is one flag: "
      "--allocation=VALUE (lowrank: energy, uniform; in a recipe --set "
      "lowrank.allocation=VALUE).")


def _compress(*flags):
  return subprocess.run([sys.executable, "-m", "pipelines.compress", *flags], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=300)


def test_the_command_refuses_an_old_flag_and_a_wrong_amount_in_one_line(tmp_path):
  """As a user meets them: status 2, one error line, nothing written."""
  result = _compress("--model_dir=m", "--eval=e", "--threshold_allocation=sensitivity",
                     f"--run_dir={tmp_path / 'a'}")
  assert result.returncode == 2
  assert "error: --threshold_allocation was removed. Every method's allocation is one flag: " \
         "--allocation=VALUE" in result.stderr
  result = _compress("--model_dir=m", "--eval=e", "--method=lowrank", "--sparsity_sweep=0.5",
                     f"--run_dir={tmp_path / 'b'}")
  assert result.returncode == 2
  assert "give --params_removed_sweep=0.5." in result.stderr
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
