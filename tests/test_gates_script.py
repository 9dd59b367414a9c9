"""scripts/gates.py b: one replicate's diagnostics merged from several runs, and refused when they disagree."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gates():
    spec = importlib.util.spec_from_file_location("gates", ROOT / "scripts" / "gates.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _replicate(folder: Path, diagnostics: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"methods": {}, "diagnostics": diagnostics}))
    return folder


def _acc(outcomes):
    return {"accuracy": sum(outcomes) / len(outcomes), "pairs": len(outcomes), "outcomes": outcomes}


def test_a_replicate_from_two_runs_pools_both_arms_against_their_nulls(tmp_path):
    gates = _gates()
    rm = _acc([1, 0, 1, 0])
    _replicate(tmp_path / "spg" / "seed-0", {"heldout_ppo_samples": {"rm": rm, "rm-spg": _acc([1, 1, 1, 0]), "rm-spg-null": _acc([1, 0, 1, 0])},
                                             "vs_null": {"heldout_ppo_samples": {"rm-spg": {"null": "rm-spg-null"}}}, "spg_pairs": None})
    _replicate(tmp_path / "ocrm" / "seed-0", {"heldout_ppo_samples": {"rm": rm, "rm-ocrm": _acc([0, 0, 1, 0]), "rm-ocrm-null": _acc([1, 0, 1, 0])},
                                              "vs_null": {"heldout_ppo_samples": {"rm-ocrm": {"null": "rm-ocrm-null"}}},
                                              "ocrm_weights": {"ess": 3.5}})
    res = gates.gate_b([tmp_path / "spg", tmp_path / "ocrm"], tmp_path / "out", records="copies")
    rows = res["reward_models"]["heldout_ppo_samples"]
    assert res["replicates"] == ["seed-0"] and set(rows) == {"rm", "rm-spg", "rm-spg-null", "rm-ocrm", "rm-ocrm-null"}
    assert rows["rm-spg"]["vs_null"]["diff"] == pytest.approx(0.25) and rows["rm-ocrm"]["vs_null"]["diff"] == pytest.approx(-0.25)
    assert res["ocrm_weights"] == [{"ess": 3.5}] and (tmp_path / "out" / "gate-b.png").exists()
    # the record keeps both runs' arms, so read again as a source (with a third run) it loses none
    kept = json.loads((tmp_path / "out" / "copies" / "seed-0" / "results.json").read_text())["diagnostics"]
    assert set(kept["heldout_ppo_samples"]) == set(rows) and set(kept["vs_null"]["heldout_ppo_samples"]) == {"rm-spg", "rm-ocrm"}
    _replicate(tmp_path / "uml" / "seed-0", {"heldout_ppo_samples": {"rm": rm, "rm-uml": _acc([0, 1, 1, 0]), "rm-uml-null": _acc([1, 0, 1, 0])},
                                             "vs_null": {"heldout_ppo_samples": {"rm-uml": {"null": "rm-uml-null"}}}})
    again = gates.gate_b([tmp_path / "out" / "copies", tmp_path / "uml"], tmp_path / "out" / "copies", records=".")
    assert set(again["reward_models"]["heldout_ppo_samples"]) == set(rows) | {"rm-uml", "rm-uml-null"}
    assert set(json.loads((tmp_path / "out" / "copies" / "seed-0" / "results.json").read_text())["diagnostics"]["vs_null"]
               ["heldout_ppo_samples"]) == {"rm-spg", "rm-ocrm", "rm-uml"}


def test_runs_that_scored_the_step2_rm_differently_are_not_one_replicate(tmp_path):
    gates = _gates()
    _replicate(tmp_path / "a" / "seed-1", {"heldout_ppo_samples": {"rm": _acc([1, 0, 1])}})
    _replicate(tmp_path / "b" / "seed-1", {"heldout_ppo_samples": {"rm": _acc([1, 1, 1])}})
    with pytest.raises(SystemExit, match="rm scored the heldout_ppo_samples pairs differently"):
        gates.gate_b([tmp_path / "a", tmp_path / "b"], tmp_path / "out")


def test_uml_training_compares_each_window_with_the_null_arm(tmp_path):
    gates = _gates()
    seed = tmp_path / "run" / "seed-0"
    for arm, norm in (("rm-uml", lambda i: 10.0 * (i + 1)), ("rm-uml-null", lambda i: 2.0)):
        (seed / arm).mkdir(parents=True)
        rows = [{"step": i + 1, "bt_loss": 0.7, "rep_loss": float(i), "beta": 0.1 * i, "grad_norm": norm(i)} for i in range(8)]
        (seed / arm / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows + [{"step": 8, "eval_accuracy": 0.5}]))
        (seed / arm / "rlop_config.json").write_text(json.dumps({"max_grad_norm": 15.0}))
    res = gates.uml_training([tmp_path / "run"], tmp_path / "out", windows=2)
    uml, null = res["replicates"]["seed-0"]["rm-uml"], res["replicates"]["seed-0"]["rm-uml-null"]
    assert uml["steps"] == 8 and [w["steps"] for w in uml["windows"]] == [[1, 4], [5, 8]]
    assert uml["windows"][0]["grad_norm"] == pytest.approx(25.0) and uml["windows"][1]["rep_loss"] == pytest.approx(5.5)
    assert uml["windows"][0]["clipped_share"] == 0.75 and null["windows"][1]["clipped_share"] == 0.0  # norms 10|20,30,40 above 15
    assert res["replicates"]["seed-0"]["grad_norm_ratio"] == pytest.approx([12.5, 32.5])
    assert (tmp_path / "out" / "uml-training.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no seed-"):
        gates.uml_training([tmp_path / "out"], tmp_path / "out2")
