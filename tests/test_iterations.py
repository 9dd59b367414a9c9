"""Steps 4-5 iterated (``rlop run --rlp-iterations K``) and the variant registry as the pipeline's only
knowledge of a variant."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_iteration_stages_sit_after_their_variant_and_force_follows_them():
    from rlop.pipeline.stages import downstream, policy_stages, stage_order

    order = stage_order(3)
    spg = [s for s in order if "spg" in s]
    assert spg == ["spg", "rm-spg", "spg-null", "rm-spg-null", "ppo-spg", "overopt-ppo-spg",
                   "samples-spg-it2", "spg-it2", "rm-spg-it2", "ppo-spg-it2", "overopt-ppo-spg-it2",
                   "samples-spg-it3", "spg-it3", "rm-spg-it3", "ppo-spg-it3", "overopt-ppo-spg-it3"]
    assert stage_order(1) == [s for s in order if "-it" not in s]  # K = 1 is Algorithm 1 as written
    assert policy_stages(3)["rlp-spg"] == "ppo-spg-it3" and policy_stages(3)["ppo"] == "ppo"
    # redoing iteration 1's PPO redoes every later iteration of that variant and its eval outputs, nothing of the others
    after = downstream("ppo-spg", 3)
    assert after[0] == "ppo-spg" and {"samples-spg-it2", "rm-spg-it3", "ppo-spg-it3", "outputs-rlp-spg"} <= set(after)
    assert not any("uml" in s or "ocrm" in s for s in after)
    assert "ppo-spg-it3" in downstream("rm", 3) and "outputs-rlp-spg" in downstream("rm-spg-it2", 3)
    assert downstream("ppo-spg-it2", 2) == ["ppo-spg-it2", "overopt-ppo-spg-it2", "outputs-rlp-spg"]


def test_iterations_need_step5():
    from rlop.config import ConfigError, build_config
    from rlop.pipeline.run_config import RunConfig

    with pytest.raises(ConfigError, match="needs step 5"):
        build_config(RunConfig, "tiny", overrides={"rlp_iterations": 2, "step5": False})
    with pytest.raises(ConfigError):
        build_config(RunConfig, "tiny", overrides={"rlp_iterations": 0})


def test_the_pipeline_knows_a_variant_only_through_its_registry_line():
    """OCRM was added as one module and one registry line: no module of the pipeline, the diagnostics or
    the report names its stages or its module (a variant that needed them edited would show here)."""
    names = re.compile(r"rlp\.(ocrm|spg|uml)\b|[\"'](rlp-ocrm|rm-ocrm|ppo-ocrm|ocrm|ocrm-null|rm-ocrm-null)[\"']")
    folders = [ROOT / "src" / "rlop" / "pipeline", ROOT / "src" / "rlop" / "evaluation"]
    hits = [f"{f.relative_to(ROOT)}:{i + 1}" for d in folders for f in sorted(d.glob("*.py"))
            for i, line in enumerate(f.read_text().splitlines()) if names.search(line)]
    assert hits == []
    registry = (ROOT / "src" / "rlop" / "rlp" / "variants.py").read_text()
    assert len(re.findall(r'Variant\("rlp-ocrm"', registry)) == 1


@pytest.mark.slow
def test_two_iterations_write_both_and_resume_after_a_kill(tmp_path):
    """K = 2 with OCRM's loop: iteration 2 reads iteration 1's policy, continues PPO from it, and a run
    killed inside iteration 2's PPO continues from its checkpoint to the uninterrupted run's results."""
    import signal
    import subprocess
    import sys

    from tests.conftest import repo_env, resumed_step, wait_for

    cmd = [sys.executable, "-m", "rlop.cli", "run", "--preset", "tiny", "--methods", "sft,ppo,rlp-ocrm", "--eval-prompts", "8",
           "--rlp-iterations", "2", "--rlp-iterate-from", "policy"]
    env = repo_env()
    full = tmp_path / "full"
    subprocess.run(cmd + ["--out", str(full)], check=True, env=env, capture_output=True, timeout=1200)
    for stage in ("ocrm", "rm-ocrm", "ppo-ocrm", "samples-ocrm-it2", "ocrm-it2", "rm-ocrm-it2", "ppo-ocrm-it2"):
        assert (full / stage / "stage.json").exists(), stage
    cfg = lambda stage: json.loads((full / stage / "stage.json").read_text())["config"]  # noqa: E731
    assert cfg("ocrm-it2")["policy"] == str(full / "ppo-ocrm" / "policy")  # density ratios of iteration 1's policy
    assert cfg("ppo-ocrm-it2")["policy"] == str(full / "ppo-ocrm" / "policy")  # PPO continues from it (its KL reference)
    assert cfg("ppo-ocrm-it2")["reward"] == str(full / "rm-ocrm-it2")
    assert cfg("ppo-ocrm")["policy"] == str(full / "sft")
    w1, w2 = ((full / s / "weights.jsonl").read_text() for s in ("ocrm", "ocrm-it2"))
    assert w1 != w2  # a different policy gives different weights
    assert "RLP's steps 4-5 ran 2 times per variant" in (full / "report.md").read_text()

    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for((run / "ppo-ocrm-it2" / "checkpoints" / "latest").exists, "iteration 2's PPO wrote a checkpoint", 1200, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (run / "ppo-ocrm-it2" / "stage.json").exists()
    out = subprocess.run(cmd + ["--out", str(run)], check=True, env=env, capture_output=True, text=True, timeout=1200).stdout
    assert "rm-ocrm: cached" in out and "rm-ocrm-it2: cached" in out and "ppo-ocrm: cached" in out
    assert resumed_step(out) >= 1
    a, b = (json.loads((d / "results.json").read_text())["methods"]["rlp-ocrm"]["scores"] for d in (full, run))
    assert a == b
