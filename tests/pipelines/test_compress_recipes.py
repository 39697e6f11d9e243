"""pipelines.compress with recipes, as a user starts it: the listing and the refusals."""

import subprocess
import sys

from prunelm_tf.compression import recipes
from tests.conftest import REPO_ROOT


def _compress(*flags):
  return subprocess.run([sys.executable, "-m", "pipelines.compress", *flags], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=300)


def test_list_recipes_prints_every_recipe_with_its_purpose_and_figures():
  result = _compress("--list_recipes")
  assert result.returncode == 0, result.stderr[-2000:]
  for name in recipes.recipe_names():
    recipe = recipes.load_recipe(name)
    assert f"\n{name}  [" in "\n" + result.stdout
    assert recipe.purpose in result.stdout
  assert "measured: the ELMo-shaped PTB biLM" in result.stdout
  # Each stage's amount by the name of its meaning, and what each name means.
  assert "\nretrain_90  [softmax]  obs sparsity 0.9 -> finetune\n" in result.stdout
  assert "\nlowrank_50  [softmax]  lowrank params_removed 0.5\n" in result.stdout
  assert "\ncluster_32  [softmax]  cluster bits_removed 0.375\n" in result.stdout
  assert "  params_removed (--params_removed_sweep): the fraction of" in result.stdout


def test_method_flags_beside_a_recipe_are_refused_with_the_set_form(tiny_run_dir, tiny_text):
  result = _compress("--recipe=retrain_90", f"--model_dir={tiny_run_dir}", f"--eval={tiny_text}",
                     f"--train={tiny_text}", f"--calibration={tiny_text}",
                     "--learning_rate=0.1")
  assert result.returncode == 2
  assert "--set finetune.retrain.learning_rate=VALUE" in result.stderr


def test_config_file_takes_no_other_configuring_flag(tmp_path):
  result = _compress(f"--config_file={tmp_path / 'config.json'}", "--recipe=obs_50",
                     f"--run_dir={tmp_path / 'r'}")
  assert result.returncode == 2
  assert "--config_file reruns the recorded run exactly; leave out --recipe" in result.stderr


def test_an_unknown_recipe_or_override_is_one_error_line(tiny_run_dir, tiny_text, tmp_path):
  result = _compress("--recipe=obs_5", f"--model_dir={tiny_run_dir}", f"--eval={tiny_text}")
  assert result.returncode == 2 and "not in the recipe book" in result.stderr
  result = _compress("--recipe=obs_50", f"--model_dir={tiny_run_dir}", f"--eval={tiny_text}",
                     f"--calibration={tiny_text}", "--set=obs.alocation=uniform",
                     f"--run_dir={tmp_path / 'r'}")
  assert result.returncode == 2 and "alocation" in result.stderr
  assert not (tmp_path / "r").exists()
