"""rlop run on the tiny preset end to end (slow: minutes), and the win-rate arithmetic."""

import pytest

from rlop.data.io import InstructionExample
from rlop.evaluation.winrate import bootstrap_ci, win_rate


def test_win_rate_ties_half_and_drops_unparseable():
    exs = [InstructionExample("q", "", "ref", {"dataset": d}) for d in ("a", "a", "b", "b")]
    verdicts = iter([2, 1, 0, None])
    r = win_rate(lambda ex, a, b: next(verdicts), exs, ["x", "y", "ref", "z"])
    assert r["n"] == 3 and r["dropped"] == 1
    assert r["win_rate"] == pytest.approx(0.5)
    assert r["per_subset"]["a"]["win_rate"] == 0.5 and r["per_subset"]["b"]["n"] == 1


def test_win_rate_averages_samples_within_an_instruction():
    exs = [InstructionExample("q1", "", "ref"), InstructionExample("q2", "", "ref")]
    verdict = {"win": 2, "loss": 1, "junk": None}
    r = win_rate(lambda ex, a, b: verdict[b], exs, [["win", "loss", "win", "win"], ["loss", "junk"]])
    # q1 scores 3/4, q2 scores 0 (its unparseable sample dropped): the unit is the instruction
    assert r["n"] == 2 and r["dropped"] == 1
    assert r["win_rate"] == pytest.approx((0.75 + 0.0) / 2)
    assert r["mean_length"] == pytest.approx((3 + 4 + 3 + 3 + 4 + 4) / 6)


def test_bootstrap_ci_brackets_mean():
    vals = [1.0] * 60 + [0.0] * 40
    lo, hi = bootstrap_ci(vals)
    assert lo < 0.6 < hi and hi - lo < 0.25


# one distinctive value per YAML section; each stage of rlop run must record it in its stage.json
SECTION_VALUES = {"sft": ("weight_decay", 0.01, ["sft"]), "collect": ("p_label_flip", 0.2, ["collect"]),
                  "reward": ("max_grad_norm", 0.9, ["rm", "rm-spg", "rm-uml", "rm-ocrm"]),
                  "ppo": ("max_grad_norm", 0.8, ["ppo", "ppo-spg", "ppo-uml", "ppo-ocrm"]), "ocrm": ("log_ratio_mult", 0.002, ["ocrm"]),
                  "sample": ("top_p", 0.95, ["samples"]), "spg": ("threshold", 0.8, ["spg"]), "bon": ("top_p", 0.85, ["bon"])}
# values that the run's own options also give a stage (its recipe): the section, set by the user, wins
RECIPE_VALUES = {"sft": ("max_examples", 200, ["sft"]), "collect": ("max_prompts", 48, ["collect"]), "ppo": ("response_len", 10, ["ppo", "ppo-spg", "ppo-uml", "ppo-ocrm"]),
                 "sample": ("n", 3, ["samples"]), "spg": ("gamma", 0.9, ["spg"]), "bon": ("n", 3, ["bon"])}


# stage folder -> (its YAML section, the fields rlop run sets itself: wired paths and the run's own recipe values)
_SAMPLES = {"policy", "prompts_file", "max_prompts", "n", "max_new_tokens", "seed"}
_RM = {"model", "train_file", "max_train_pairs", "synthetic_file", "views_file", "rep_loss", "pair_weights_file"}
STAGE_SECTIONS = {"sft": ("sft", {"train_file", "max_examples"}), "collect": ("collect", {"policy", "prompts_file", "max_prompts", "max_new_tokens", "seed"}),
                  "rm": ("reward", _RM), "rm-spg": ("reward", _RM), "rm-uml": ("reward", _RM), "rm-ocrm": ("reward", _RM),
                  **{p: ("ppo", {"policy", "reward", "response_len", "prompts_file"}) for p in ("ppo", "ppo-spg", "ppo-uml", "ppo-ocrm")},
                  "ocrm": ("ocrm", {"policy", "reference", "preferences"}),
                  "samples": ("sample", _SAMPLES), "heldout-sft": ("sample", _SAMPLES), "heldout-ppo": ("sample", _SAMPLES),
                  "spg": ("spg", {"samples", "reward_model", "judge", "gamma", "seed"}),
                  "bon": ("bon", {"policy", "reward", "n", "draws", "temperature", "max_new_tokens", "seed"})}


def _flat(config: dict) -> dict:
    """Nested option groups (reward's uml and api) flattened, as their flags and YAML keys are."""
    return {k: v for key, value in config.items() for k, v in (value.items() if isinstance(value, dict) else [(key, value)])}


@pytest.mark.slow
def test_rlop_run_tiny_all_methods(tmp_path):
    import dataclasses
    import json

    import yaml

    from rlop.cli import main

    cfg = tmp_path / "run.yaml"
    sections = {section: {key: value} for section, (key, value, _) in SECTION_VALUES.items()}
    for section, (key, value, _) in RECIPE_VALUES.items():
        sections[section][key] = value
    sections["ppo"]["precision"] = "fp32"  # precision is a section key like any other
    cfg.write_text(yaml.safe_dump(sections))
    assert main(["run", "--preset", "tiny", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "bon" / "stage.json").read_text())["config"]["temperature"] == 1.0  # AlpacaFarm's best-of-n
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["diagnostics"]) == {"heldout_sft_samples", "heldout_ppo_samples", "step4_samples", "spg_pairs", "uml_terms", "ocrm_weights"}
    assert {"skl", "mi_jsd"} <= set(res["diagnostics"]["uml_terms"]["last"])
    assert set(res["diagnostics"]["heldout_ppo_samples"]) == {"rm", "rm-spg", "rm-uml", "rm-ocrm"}
    assert res["paired"]["rlp-spg"]["vs_ppo"]["n"] == 32 and len(res["methods"]["ppo"]["scores"]) == 32
    for section, (key, value, stages) in [*SECTION_VALUES.items(), *RECIPE_VALUES.items()]:
        for stage in stages:
            assert json.loads((tmp_path / "run" / stage / "stage.json").read_text())["config"][key] == value, (section, stage)
    # one road: every other field of every stage config is what the stage's own command resolves from the same YAML
    from rlop.config import build_config, section_class

    for stage, (section, run_set) in STAGE_SECTIONS.items():
        recorded = _flat(json.loads((tmp_path / "run" / stage / "stage.json").read_text())["config"])
        own = _flat(dataclasses.asdict(build_config(section_class(section), "tiny", cfg, section=section)))
        assert set(recorded) == set(own), stage
        differ = {k for k in own if recorded[k] != own[k]} - run_set - {"precision"}
        assert not differ, (stage, {k: (recorded[k], own[k]) for k in differ})
    for ppo in ("ppo", "ppo-spg", "ppo-uml", "ppo-ocrm"):
        record = json.loads((tmp_path / "run" / ppo / "stage.json").read_text())
        assert record["precision"] == record["config"]["precision"] == "fp32", ppo
    heldout = json.loads((tmp_path / "run" / "heldout-ppo" / "stage.json").read_text())["config"]
    assert heldout["top_p"] == 0.95 and heldout["n"] == 4  # sample:'s sampling options; the count is heldout_samples
    report = (tmp_path / "run" / "report.md").read_text()
    for m in ("sft", "bon", "ppo", "rlp-uml", "rlp-spg", "rlp-ocrm"):
        assert f"| {m} |" in report
    assert (tmp_path / "run" / "winrate.png").exists()
    assert "2 sampled outputs" in report  # tiny preset: eval_samples = 2
    assert "RLP-UML's loss terms" in report
    assert "Policy optimiser of steps 3 and 5: PPO with GAE and a value model; 1 sample per prompt" in report
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())  # every stage's time and peak memory, beside the results and in the report
    assert {"sft", "collect", "rm", "ppo", "samples", "rm-spg", "ppo-spg", "rm-uml", "ppo-uml", "bon", "outputs-ppo"} <= set(stages)
    assert all(st["seconds"] > 0 and st["peak_rss_mb"] > 50 for st in stages.values()), stages
    assert "| ppo-spg |" in report and "peak RSS (MB)" in report
    for ppo in ("ppo", "ppo-spg", "ppo-uml"):  # finished PPO stages keep the policy, not the resume checkpoints
        assert (tmp_path / "run" / ppo / "policy" / "config.json").exists() and not (tmp_path / "run" / ppo / "checkpoints").exists()


@pytest.mark.slow
def test_run_on_a_preference_file_with_rloo_skips_collection_and_finishes(tmp_path):
    """Step 1 done already (--preferences-file): every method, step 4 included, runs on the user's pairs; the ppo:
    section's critic-free estimator (RLOO) is the optimiser of step 3 and of every step 5, and the report says so."""
    import json

    from rlop.cli import main

    assert main(["sandbox", "export", "--out", str(tmp_path / "w")]) == 0
    prefs = tmp_path / "w" / "preference.jsonl"
    (tmp_path / "rloo.yaml").write_text("ppo:\n  advantage_estimator: rloo\n  samples_per_prompt: 4\n")
    assert main(["run", "--preset", "tiny", "--methods", "all", "--preferences-file", str(prefs), "--eval-prompts", "8",
                 "--precision", "fp32", "--config", str(tmp_path / "rloo.yaml"), "--out", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    assert not (run / "collect").exists() and (run / "report.md").exists()
    for stage in ("sft", "rm", "ppo", "samples", "spg", "rm-spg", "rm-uml", "ppo-spg", "bon", "outputs-ppo"):
        record = json.loads((run / stage / "stage.json").read_text())
        assert record["precision"] == "fp32" and record.get("config", {}).get("precision", "fp32") == "fp32", stage
    assert json.loads((run / "rm-spg" / "stage.json").read_text())["config"]["train_file"] == str(prefs)
    for ppo in ("ppo", "ppo-spg", "ppo-uml", "ppo-ocrm"):
        config = json.loads((run / ppo / "stage.json").read_text())["config"]
        assert (config["advantage_estimator"], config["samples_per_prompt"]) == ("rloo", 4), ppo
    assert "Policy optimiser of steps 3 and 5: rloo, critic-free; 4 samples per prompt" in (run / "report.md").read_text()
    assert set(json.loads((run / "results.json").read_text())["methods"]) == {"sft", "bon", "ppo", "rlp-uml", "rlp-spg", "rlp-ocrm"}


@pytest.mark.slow
def test_killed_run_continues_without_redoing_stages(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "rlop.cli", "run", "--preset", "tiny", "--methods", "sft,ppo,rlp-spg"]
    from tests.conftest import repo_env, resumed_step, wait_for

    env = repo_env()
    subprocess.run(cmd + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True, timeout=900)
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run / "ppo" / "checkpoints" / "latest"
    wait_for(latest.exists, "PPO wrote its first checkpoint", 600, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    sft_stamp = (run / "sft" / "stage.json").stat().st_mtime_ns
    assert not (run / "ppo" / "stage.json").exists()
    out = subprocess.run(cmd + ["--out", str(run)], check=True, env=env, capture_output=True, text=True, timeout=900).stdout
    assert "sft: cached" in out and "rm: cached" in out
    assert resumed_step(out) >= 1  # the PPO stage continued from its checkpoint, not from step 0
    assert (run / "sft" / "stage.json").stat().st_mtime_ns == sft_stamp
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    assert a == b


@pytest.mark.slow
def test_the_run_seed_reaches_every_trained_stage(tmp_path):
    import json

    from rlop.cli import main

    for seed in (0, 1):
        assert main(["run", "--preset", "tiny", "--methods", "sft,ppo,rlp-spg", "--eval-prompts", "8", "--seed", str(seed),
                     "--out", str(tmp_path / f"s{seed}")]) == 0
    for stage in ("sft", "rm", "ppo/policy", "rm-spg", "ppo-spg/policy"):
        a, b = ((tmp_path / f"s{s}" / stage / "model.safetensors").read_bytes() for s in (0, 1))
        assert a != b, stage
    for stage in ("collect/preferences.jsonl", "samples/samples.jsonl", "outputs-sft/outputs.jsonl"):
        assert (tmp_path / "s0" / stage).read_text() != (tmp_path / "s1" / stage).read_text(), stage
    seeds = [json.loads((tmp_path / f"s{s}" / "sft" / "stage.json").read_text())["config"]["seed"] for s in (0, 1)]
    assert seeds[1] == seeds[0] + 1  # the stage's own seed plus the run seed


@pytest.mark.slow
def test_seeds_share_stages_train_their_own_and_compare(tmp_path, monkeypatch):
    import json

    import rlop.pipeline.checks as checks
    from rlop.cli import main

    scorings = []  # the diagnostics' reward-model scorings: (RM folder, pairs)
    score = checks.accuracy_with_interval
    monkeypatch.setattr(checks, "accuracy_with_interval", lambda r, pairs: scorings.append((r.path, len(pairs))) or score(r, pairs))

    out, shared = tmp_path / "study", ["sft", "collect", "rm", "heldout-sft", "outputs-sft", "bon"]
    argv = ["run", "--preset", "tiny", "--methods", "sft,bon,ppo,rlp-spg", "--eval-prompts", "8", "--seeds", "0,1",
            "--shared-stages", ",".join(shared), "--out", str(out)]
    assert main(argv) == 0
    # rm and rm-spg on 3 sets of pairs per seed; rm on the shared SFT samples is scored once for both seeds
    assert len(scorings) == 2 * 2 * 3 - 1
    for stage in shared:  # computed once, in shared/, with the first seed
        assert (out / "shared" / stage / "stage.json").exists(), stage
        assert not (out / "seed-0" / stage).exists() and not (out / "seed-1" / stage).exists(), stage
    assert json.loads((out / "shared" / "sft" / "stage.json").read_text())["config"]["seed"] == 42
    for stage in ("ppo/policy", "rm-spg", "ppo-spg/policy"):  # every seed trains its own
        a, b = ((out / f"seed-{s}" / stage / "model.safetensors").read_bytes() for s in (0, 1))
        assert a != b, stage
    res = json.loads((out / "compare.json").read_text())
    assert res["seeds"] == [0, 1] and res["shared_stages"] == shared
    assert {"bon", "ppo", "rlp-spg"} <= set(res["paired"]) and "vs_ppo" in res["paired"]["rlp-spg"]
    assert {"rm", "rm-spg"} <= set(res["reward_models"]["heldout_ppo_samples"])
    assert (out / "compare_forest.png").stat().st_size > 0 and (out / "seed-1" / "report.md").exists()

    stamp = lambda: {p: p.stat().st_mtime_ns for p in (out / "shared" / "sft" / "stage.json", out / "seed-1" / "ppo" / "stage.json",  # noqa: E731
                                                      out / "seed-1" / "diagnostics.json")}
    before = stamp()
    assert main(argv) == 0  # a rerun finds every stage done
    assert stamp() == before
    scorings.clear()
    assert main(argv + ["--force", "ppo"]) == 0  # redoes each seed's PPO, never a shared stage
    assert len(scorings) == 2 * 5  # per seed: rm on the new PPO samples (2 sets); rm-spg, retrained on them, everywhere
    after = stamp()
    assert after[out / "shared" / "sft" / "stage.json"] == before[out / "shared" / "sft" / "stage.json"]
    assert after[out / "seed-1" / "ppo" / "stage.json"] != before[out / "seed-1" / "ppo" / "stage.json"]
    assert after[out / "seed-1" / "diagnostics.json"] != before[out / "seed-1" / "diagnostics.json"]  # re-scored on the new PPO samples

    # a replicate added later (--seeds 2 --shared-seed 0) reads the shared stages of seed 0 and joins the comparison
    add = argv[:argv.index("--seeds")] + ["--seeds", "2", "--shared-seed", "0"] + argv[argv.index("--seeds") + 2:]
    assert main(add) == 0
    assert stamp()[out / "shared" / "sft" / "stage.json"] == before[out / "shared" / "sft" / "stage.json"]
    assert json.loads((out / "seed-2" / "ppo" / "stage.json").read_text())["config"]["seed"] == \
        json.loads((out / "seed-1" / "ppo" / "stage.json").read_text())["config"]["seed"] + 1
    assert not (out / "seed-2" / "sft").exists() and json.loads((out / "compare.json").read_text())["seeds"] == [0, 1, 2]


def test_heldout_diagnostic_prompts_are_disjoint_from_step4_prompts():
    from rlop.data.io import load_instructions

    val = {(e.instruction, e.input) for e in load_instructions("sandbox:val")}
    unlabeled = {(e.instruction, e.input) for e in load_instructions("sandbox:unlabeled")}
    assert val and unlabeled and not val & unlabeled


def test_wilson_interval():
    from rlop.evaluation.diagnostics import wilson_interval

    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 0) == (None, None) and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_synthetic_pair_accuracy_counts_per_family(tmp_path):
    from rlop.evaluation.diagnostics import synthetic_pair_accuracy
    from tests.conftest import write_jsonl

    spec = {"type": "number", "answer": "4"}
    rows = [{"instruction": "2+2?", "input": "", "output_1": "4", "output_2": "5", "preference": 1, "spec": spec, "family": "arithmetic"},
            {"instruction": "2+2?", "input": "", "output_1": "5", "output_2": "4", "preference": 1, "spec": spec, "family": "arithmetic"},
            {"instruction": "1+3?", "input": "", "output_1": "4", "output_2": "7", "preference": 1, "spec": spec, "family": "other"}]
    r = synthetic_pair_accuracy(write_jsonl(tmp_path / "s.jsonl", rows))
    assert r["pairs"] == 3 and r["gold_accuracy"] == pytest.approx(2 / 3)
    assert r["per_family"] == {"arithmetic": {"pairs": 2, "gold_accuracy": 0.5}, "other": {"pairs": 1, "gold_accuracy": 1.0}}
    (tmp_path / "empty.jsonl").write_text("")
    assert synthetic_pair_accuracy(tmp_path / "empty.jsonl")["pairs"] == 0


def test_force_redoes_what_reads_the_stage_and_nothing_else():
    from rlop.pipeline.stages import ORDER, STAGE_INPUTS, downstream

    assert set(STAGE_INPUTS) >= set(ORDER) - {"eval"}
    assert all(set(reads) <= set(STAGE_INPUTS) for reads in STAGE_INPUTS.values())
    ppo = downstream("ppo")
    step4 = {"samples", "spg", "rm-spg", "ppo-spg", "rm-uml", "ppo-uml", "ocrm", "rm-ocrm", "ppo-ocrm"}
    nulls = {"spg-null", "rm-spg-null", "rm-uml-null", "ocrm-null", "rm-ocrm-null"}
    curves = {"overopt-ppo", "overopt-ppo-spg", "overopt-ppo-uml", "overopt-ppo-ocrm"}
    outputs = {"heldout-ppo", "outputs-ppo", "outputs-rlp-spg", "outputs-rlp-uml", "outputs-rlp-ocrm"}
    assert ppo[0] == "ppo" and step4 | nulls | curves | outputs == set(ppo[1:])
    assert not {"bon", "heldout-sft", "outputs-sft", "rm", "collect"} & set(ppo)  # independent of PPO: stay cached
    assert {"bon", "ppo", "ppo-spg"} <= set(downstream("rm")) and not {"heldout-sft", "outputs-sft"} & set(downstream("rm"))
    assert set(downstream("sft")) == set(STAGE_INPUTS)  # everything reads SFT
    assert downstream("ppo-spg") == ["ppo-spg", "overopt-ppo-spg", "outputs-rlp-spg"]
    assert downstream("rm-spg-null") == ["rm-spg-null"]  # a null arm feeds no PPO stage
    assert downstream("eval") == ["outputs-sft", "outputs-ppo", "outputs-rlp-uml", "outputs-rlp-spg", "outputs-rlp-ocrm"]
