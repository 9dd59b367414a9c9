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


def test_bootstrap_ci_brackets_mean():
    vals = [1.0] * 60 + [0.0] * 40
    lo, hi = bootstrap_ci(vals)
    assert lo < 0.6 < hi and hi - lo < 0.25


@pytest.mark.slow
def test_rlop_run_tiny_all_methods(tmp_path):
    from rlop.cli import main

    assert main(["run", "--preset", "tiny", "--out", str(tmp_path / "run")]) == 0
    report = (tmp_path / "run" / "report.md").read_text()
    for m in ("sft", "bon", "ppo", "rlp-uml", "rlp-spg"):
        assert f"| {m} |" in report
    assert (tmp_path / "run" / "winrate.png").exists()
