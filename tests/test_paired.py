"""Paired bootstrap of method differences against hand-computed cases."""

import pytest

from rlop.evaluation.paired import paired_bootstrap, paired_differences, paired_table


def test_differences_drop_instructions_without_a_score_for_both():
    assert paired_differences([1.0, None, 0.5, 0.0], [0.0, 1.0, None, 0.0]) == [1.0, 0.0]
    with pytest.raises(ValueError):
        paired_differences([1.0], [1.0, 0.0])


def test_constant_difference_has_a_point_interval():
    r = paired_bootstrap([[1.0, 0.5, 1.0]], [[0.5, 0.0, 0.5]])
    assert r["diff"] == pytest.approx(0.5) and r["ci_low"] == pytest.approx(0.5) and r["ci_high"] == pytest.approx(0.5)
    assert r["above_zero"] == 1.0 and r["n"] == 3 and r["seeds"] == 1 and r["se"] == pytest.approx(0.0) and r["mdd"] == pytest.approx(0.0)


def test_mean_and_interval_of_a_mixed_difference():
    a, b = [1.0] * 30 + [0.0] * 70, [0.0] * 100  # the difference is 1 on 30 instructions, 0 on 70
    r = paired_bootstrap([a], [b], n_boot=4000)
    assert r["diff"] == pytest.approx(0.3)
    se = (0.3 * 0.7 / 100) ** 0.5  # the bootstrap interval is close to +-1.96 standard errors
    assert r["ci_low"] == pytest.approx(0.3 - 1.96 * se, abs=0.02) and r["ci_high"] == pytest.approx(0.3 + 1.96 * se, abs=0.02)
    assert r["above_zero"] == 1.0
    assert r["se"] == pytest.approx(se, rel=0.1) and r["mdd"] == pytest.approx(2.8016 * se, rel=0.1)


def test_pairing_removes_shared_instruction_difficulty():
    # b is a + 0.1 on every instruction, while instruction scores vary widely: the paired interval is a point
    a = [0.0, 0.9, 0.2, 0.8, 0.1, 0.7] * 10
    r = paired_bootstrap([[x + 0.1 for x in a]], [a])
    assert r["ci_low"] == pytest.approx(0.1) and r["ci_high"] == pytest.approx(0.1)


def test_seeds_are_resampled_too():
    # seed 1: +0.2 everywhere; seed 2: 0 everywhere -> point 0.1, the interval spans both seeds' values
    r = paired_bootstrap([[0.2] * 20, [0.0] * 20], [[0.0] * 20, [0.0] * 20], n_boot=4000)
    assert r["diff"] == pytest.approx(0.1) and r["seeds"] == 2
    assert r["ci_low"] == pytest.approx(0.0) and r["ci_high"] == pytest.approx(0.2)
    assert 0.6 < r["above_zero"] < 0.9  # a resample is all zero only when it draws seed 2 twice (p = 1/4)


def test_table_compares_every_method_with_ppo_and_sft():
    scores = {"sft": [[0.0, 0.0]], "ppo": [[1.0, 0.0]], "rlp-spg": [[1.0, 1.0]]}
    t = paired_table(scores)
    assert set(t) == {"sft", "ppo", "rlp-spg"} and set(t["rlp-spg"]) == {"vs_ppo", "vs_sft"}
    assert t["rlp-spg"]["vs_ppo"]["diff"] == pytest.approx(0.5) and t["ppo"]["vs_sft"]["diff"] == pytest.approx(0.5)
    assert "vs_ppo" not in t["ppo"] and set(t["sft"]) == {"vs_ppo"}


def test_no_paired_instruction_gives_nulls_not_nan():
    r = paired_bootstrap([[None, 1.0]], [[0.0, None]])
    assert r["diff"] is None and r["n"] == 0


def fake_run(path, seed, scores, diagnostics=None):
    """A finished run folder as rlop run leaves it (marker, run_config.json, results.json with scores)."""
    import json

    from rlop import outputs

    with outputs.claim(path, "run"):
        (path / "run_config.json").write_text(json.dumps({"seed": seed}))
        (path / "results.json").write_text(json.dumps({"methods": {m: {"scores": s} for m, s in scores.items()}, "diagnostics": diagnostics or {}}))
    return path


def test_rlop_compare_aggregates_seeds(tmp_path, capsys):
    import json

    from rlop.cli import main

    a = fake_run(tmp_path / "s0", 0, {"sft": [0.0, 0.0, 1.0, 0.0], "ppo": [1.0, 0.0, 1.0, 0.0], "rlp-spg": [1.0, 1.0, 1.0, None]})
    b = fake_run(tmp_path / "s1", 1, {"sft": [0.0, 0.0, 0.0, 0.0], "ppo": [1.0, 0.0, 0.0, 0.0], "rlp-spg": [1.0, 0.0, 0.0, 0.0]})
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert res["seeds"] == [0, 1]
    assert res["win_rate"]["ppo"]["diff"] == pytest.approx((0.5 + 0.25) / 2)
    # rlp-spg vs ppo: seed 0 differs on instruction 2 only (instruction 4 dropped): +1/3; seed 1: 0
    assert res["paired"]["rlp-spg"]["vs_ppo"]["diff"] == pytest.approx((1 / 3 + 0) / 2)
    assert (tmp_path / "cmp" / "compare_forest.png").stat().st_size > 0
    assert "| rlp-spg | ppo | +16.7 |" in capsys.readouterr().out


def test_rlop_compare_refuses_runs_of_different_eval_sets(tmp_path, capsys):
    from rlop.cli import main

    a = fake_run(tmp_path / "s0", 0, {"ppo": [1.0, 0.0]})
    b = fake_run(tmp_path / "s1", 1, {"ppo": [1.0, 0.0, 1.0]})
    (tmp_path / "plain").mkdir()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 2
    assert "different numbers of instructions" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "plain"), "--out", str(tmp_path / "cmp")]) == 2
    assert "not a finished rlop run" in capsys.readouterr().err and not (tmp_path / "cmp").exists()


def _acc(outcomes):
    return {"accuracy": sum(outcomes) / len(outcomes), "pairs": len(outcomes), "outcomes": outcomes}


def test_compare_bootstraps_reward_model_accuracy_over_seeds_and_pairs_it_with_rm(tmp_path):
    from rlop.evaluation.compare import compare

    spg = lambda pairs, right: {"pairs": pairs, "gold_judged": pairs, "gold_right": right, "gold_accuracy": right / pairs,  # noqa: E731
                                "ci_low": 0, "ci_high": 1, "per_family": {}}
    d0 = {"heldout_ppo_samples": {"rm": _acc([1, 0, 0, 1]), "rm-spg": _acc([1, 1, 0, 1])}, "spg_pairs": spg(4, 3)}
    d1 = {"heldout_ppo_samples": {"rm": _acc([0, 0, 1, 1, 0, 0]), "rm-spg": _acc([0, 0, 1, 1, 0, 0])}, "spg_pairs": spg(6, 3)}
    runs = [fake_run(tmp_path / f"s{i}", i, {"ppo": [1.0]}, d) for i, d in enumerate((d0, d1))]
    res = compare(runs)
    row = res["reward_models"]["heldout_ppo_samples"]
    assert row["rm"]["diff"] == pytest.approx((2 / 4 + 2 / 6) / 2) and row["rm"]["pairs"] == 10
    # rm-spg is right on one more of seed 0's 4 pairs and on the same pairs of seed 1: (+1/4 + 0) / 2
    assert row["rm-spg"]["vs_rm"]["diff"] == pytest.approx(1 / 8) and "vs_rm" not in row["rm"]
    assert res["spg_pairs"]["pairs"] == 10 and res["spg_pairs"]["per_run"] == [4, 6] and res["spg_pairs"]["gold_accuracy"] == pytest.approx(0.6)


def test_compare_pools_each_retrained_reward_model_over_the_runs_that_trained_it(tmp_path):
    # gate B's replicates may come from runs with different variants: rm-spg in seeds 0 and 1, rm-ocrm in seed 1 only
    from rlop.evaluation.compare import compare

    null = lambda n: {"heldout_ppo_samples": {n: {"null": f"{n}-null"}}}  # noqa: E731
    d0 = {"heldout_ppo_samples": {"rm": _acc([1, 0, 0, 1]), "rm-spg": _acc([1, 1, 0, 1]), "rm-spg-null": _acc([1, 0, 0, 1])},
          "vs_null": null("rm-spg")}
    d1 = {"heldout_ppo_samples": {"rm": _acc([0, 0, 1, 1]), "rm-spg": _acc([0, 0, 1, 1]), "rm-spg-null": _acc([0, 0, 1, 1]),
                                  "rm-ocrm": _acc([1, 1, 1, 1]), "rm-ocrm-null": _acc([0, 1, 1, 1])},
          "vs_null": {"heldout_ppo_samples": {"rm-spg": {"null": "rm-spg-null"}, "rm-ocrm": {"null": "rm-ocrm-null"}}},
          "ocrm_weights": {"ess": 3.0}}
    row = compare([fake_run(tmp_path / f"s{i}", i, {"ppo": [1.0]}, d) for i, d in enumerate((d0, d1))])["reward_models"]["heldout_ppo_samples"]
    assert row["rm-spg"]["runs"] == 2 and row["rm-spg"]["vs_null"]["diff"] == pytest.approx(1 / 8)
    assert row["rm-ocrm"]["runs"] == 1 and row["rm-ocrm"]["pairs"] == 4 and row["rm-ocrm"]["diff"] == pytest.approx(1.0)
    # paired with seed 1's rm (2 of 4 right) and its own null (3 of 4), never with seed 0's
    assert row["rm-ocrm"]["vs_rm"]["diff"] == pytest.approx(0.5) and row["rm-ocrm"]["vs_null"]["diff"] == pytest.approx(0.25)


def test_compare_leaves_out_reward_models_when_a_run_has_no_outcomes(tmp_path):
    from rlop.evaluation.compare import compare

    runs = [fake_run(tmp_path / "s0", 0, {"ppo": [1.0]}, {"heldout_ppo_samples": {"rm": _acc([1, 0])}}),
            fake_run(tmp_path / "s1", 1, {"ppo": [0.0]}, {"left_out": "no sandbox tasks"})]
    res = compare(runs)
    assert res["reward_models"] == {} and res["spg_pairs"] is None
