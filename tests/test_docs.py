"""The README stays true: its recipe parses as rlop run reads it, and every document it links exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_recipe_parses_into_the_stage_configs(tmp_path):
    from rlop.config import build_config
    from rlop.evaluation.winrate import EvalConfig
    from rlop.pipeline.run_config import RunConfig
    from rlop.training.sft import SFTConfig

    text = (ROOT / "README.md").read_text()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    run = build_config(RunConfig, None, str(recipe), {}, section="run")
    assert run.preferences_file == "data/prefs.jsonl" and run.eval_annotator == "api"
    assert build_config(SFTConfig, None, str(recipe), {}, section="sft").model.startswith("meta-llama/")
    assert build_config(EvalConfig, None, str(recipe), {}, section="eval").api.api_base.startswith("https://")


def test_readme_links_exist():
    text = (ROOT / "README.md").read_text()
    links = [l for l in re.findall(r"\]\(([^)#]+)", text) if not l.startswith("http")]
    assert links and all((ROOT / l).exists() for l in links), [l for l in links if not (ROOT / l).exists()]
