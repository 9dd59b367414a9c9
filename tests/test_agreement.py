"""rlop agreement: an annotator measured against labelled pairs (agreement, consistency, position bias)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from rlop.cli import main
from rlop.evaluation.agreement import agreement_stats
from tests.conftest import SHARED, write_jsonl
from tests.helpers_http import reply


def test_stats_by_hand():
    rows = [(1, 1, 2),     # agrees; consistent (picks output_1 in both orders)
            (2, 1, 1),     # disagrees as labelled, agrees swapped; picks the first shown both times
            (1.5, 1, 1),   # a draw: only in consistency and position
            (2, None, 1),  # no verdict in one order: dropped from everything
            (1, 0, 0)]     # a tie both times: half agreement, consistent
    s = agreement_stats(rows)
    assert s["agreement"]["value"] == pytest.approx((1 + 0 + 0.5) / 3) and s["agreement"]["n"] == 3
    assert s["agreement_swapped"]["value"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert s["consistency"]["value"] == pytest.approx(2 / 4)
    assert s["first_position_rate"]["value"] == pytest.approx((1 + 0 + 1 + 1 + 1 + 1 + 0.5 + 0.5) / 8)
    assert (s["pairs"], s["draws"], s["dropped_no_verdict"]) == (4, 1, 1)
    lo, hi = s["consistency"]["ci"]
    assert 0 <= lo <= 0.5 <= hi <= 1


class AlwaysFirst(BaseHTTPRequestHandler):
    """A judge with pure position bias: it always answers Output (a)."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        reply(self, "Output (a)")

    def log_message(self, *a):
        pass


def test_position_bias_of_an_api_judge(tmp_path, monkeypatch, capsys):
    srv = HTTPServer(("127.0.0.1", 0), AlwaysFirst)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"instruction": f"q{i}", "output_1": f"a{i}", "output_2": f"b{i}", "preference": p}
                                                       for i, p in enumerate([1, 1, 1, 2, 0, None])])
        monkeypatch.setenv("RLOP_API_KEY", "secret-key")
        rc = main(["agreement", "--annotator", "api", "--api-base", f"http://127.0.0.1:{srv.server_port}/v1", "--pairs-file", str(pairs),
                   "--out", str(tmp_path / "agr")])
    finally:
        srv.shutdown()
    assert rc == 0
    res = json.loads((tmp_path / "agr" / "agreement.json").read_text())
    assert res["first_position_rate"]["value"] == 1.0 and res["consistency"]["value"] == 0.0
    assert res["agreement"]["value"] == pytest.approx(3 / 4) and res["agreement_swapped"]["value"] == pytest.approx(1 / 4)
    assert (res["pairs"], res["draws"], res["skipped_no_label"]) == (5, 1, 1)
    assert "secret-key" not in (tmp_path / "agr" / "agreement.json").read_text()
    assert "first-position rate 100.0%" in capsys.readouterr().out


def test_bad_label_is_a_user_error(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"instruction": "q", "output_1": "a", "output_2": "b", "preference": 3}])
    assert main(["agreement", "--annotator", "api", "--pairs-file", str(pairs)]) == 2
    assert "rlop: error:" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "alpaca_eval").exists(), reason="../shared/data not present")
def test_reads_alpaca_eval_gpt4_annotations():
    from rlop.data.io import load_labelled_pairs

    pairs, counts = load_labelled_pairs(SHARED / "alpaca_eval" / "annotations_alpaca_eval_gpt4" / "gpt4_vs_text_davinci_003.jsonl")
    labels = [p[3] for p in pairs]
    # the leaderboard's GPT-4 win rate (95.28) from the same file, draws counted half
    assert 100 * sum({1.0: 0.0, 2.0: 1.0, 1.5: 0.5}[x] for x in labels) / len(labels) == pytest.approx(95.28, abs=0.01)
    assert len(pairs) + counts["no_verdict"] == 805
