"""The OpenAI-compatible API annotator against a local HTTP server (loopback only)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from rlop.data.io import InstructionExample
from rlop.evaluation.annotators import APIAnnotator
from rlop.evaluation.winrate import win_rate
from tests.helpers_http import fail, reply


class Handler(BaseHTTPRequestHandler):
    script: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"]
        action = Handler.script.pop(0) if Handler.script else "prefer-long"
        if action == "500":
            self.send_response(500)
            self.end_headers()
            return
        if action == "garbage":
            answer = "I cannot decide."
        else:  # prefer the output containing the word LONG, whichever position it was shown in
            a = prompt.split("# Output (a)")[1].split("# Output (b)")[0]
            answer = "Output (a)" if "LONG" in a else "Output (b)"
        reply(self, answer)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Handler.script, Handler.seen = [], []
    yield f"http://127.0.0.1:{srv.server_port}/v1"
    srv.shutdown()


def test_api_annotator_unswaps_retries_and_drops_unparseable(server):
    judge = APIAnnotator(base_url=server, api_key="k", model="m", retries=2, backoff=0.01)
    exs = [InstructionExample(f"question {i}", "", f"short ref {i}") for i in range(12)]
    outs = [f"LONG answer {i}" for i in range(12)]
    Handler.script = ["500", "prefer-long", "garbage"]
    r = win_rate(judge.prefer, exs, outs)
    # first call: one 500 then success (retry); second call: unparseable (dropped); the rest: model wins
    assert judge.stats["retries"] == 1 and judge.stats["unparseable"] == 1
    assert r["n"] == 11 and r["dropped"] == 1 and r["win_rate"] == 1.0
    assert Handler.seen[0][0] == "/v1/chat/completions" and Handler.seen[0][1] == "Bearer k"
    # both presentation orders were used (randomised, seeded)
    firsts = {"LONG" in body["messages"][0]["content"].split("# Output (a)")[1].split("# Output (b)")[0] for _, _, body in Handler.seen}
    assert firsts == {True, False}
    assert judge.prefer(exs[0], "same", "same") == 0


def test_api_annotator_gives_up_after_retries(server):
    judge = APIAnnotator(base_url=server, retries=1, backoff=0.01)
    Handler.script = ["500", "500"]
    assert judge.prefer(InstructionExample("q", "", "r"), "a", "b") is None
    assert judge.stats["failed"] == 1


def test_parse():
    assert APIAnnotator.parse("Output (b)") == "b"
    assert APIAnnotator.parse("I prefer output (a).") == "a"
    assert APIAnnotator.parse("Output (a) or Output (b)") is None
    assert APIAnnotator.parse("neither") is None


# ------------------------------------------------------------------ failures a user meets (rlop eval --annotator api)


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next scripted action; 'ok' prefers output (b)."""

    script: list = []
    count = 0

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        Scripted.count += 1
        action = Scripted.script.pop(0) if Scripted.script else "ok"
        if action == "reset":  # close the socket without an answer
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        if action == "badstatus":
            self.wfile.write(b"NOT-HTTP garbage\r\n\r\n")
            self.close_connection = True
            return
        if action.isdigit():
            fail(self, int(action))
            return
        if action == "ok":
            reply(self, "Output (b)", {"prompt_tokens": 100, "completion_tokens": 3})
            return
        reply(self, {"nonjson": b"<html>oops</html>", "nochoices": b'{"error": "x"}', "latin1": b'{"choices": "\xff\xfe"}'}[action])

    def log_message(self, *a):
        pass


@pytest.fixture
def scripted():
    srv = HTTPServer(("127.0.0.1", 0), Scripted)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    Scripted.script, Scripted.count = [], 0
    yield f"http://127.0.0.1:{srv.server_port}/v1"
    srv.shutdown()


def eval_files(tmp_path, n=3):
    from tests.conftest import write_jsonl

    refs = write_jsonl(tmp_path / "refs.jsonl", [{"instruction": f"q{i}", "output": f"ref {i}"} for i in range(n)])
    outs = write_jsonl(tmp_path / "outs.jsonl", [{"instruction": f"q{i}", "output": f"model {i}"} for i in range(n)])
    return refs, outs


def run_eval_cli(tmp_path, base, capsys, n=3, *extra):
    from rlop.cli import main

    refs, outs = eval_files(tmp_path, n)
    code = main(["eval", "--annotator", "api", "--api-base", base, "--api-retries", "2", "--api-backoff", "0.01", "--eval-file", str(refs),
                 "--outputs", str(outs), "--out", str(tmp_path / "ev"), *extra])
    return code, capsys.readouterr()


@pytest.mark.parametrize("first,message", [("401", "HTTP 401 (unauthorized"), ("403", "HTTP 403"), ("404", "HTTP 404 (not found"),
                                            ("nonjson", "did not answer with a chat completion"), ("nochoices", "did not answer with a chat completion"),
                                            ("latin1", "did not answer with a chat completion")])
def test_api_first_hard_failure_stops_with_exit_2(tmp_path, scripted, capsys, first, message):
    Scripted.script = [first]
    code, io = run_eval_cli(tmp_path, scripted, capsys)
    assert code == 2 and message in io.err and "Traceback" not in io.err
    assert Scripted.count == 1  # never retried
    assert not (tmp_path / "ev").exists()


def test_api_unreachable_endpoint_stops_at_once(tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    code, io = run_eval_cli(tmp_path, f"http://127.0.0.1:{port}/v1", capsys)
    assert code == 2 and "cannot reach" in io.err and "retry" not in io.err.lower()  # the first failure stops it: no retries
    assert not (tmp_path / "ev").exists()


def test_api_retries_429_with_retry_after_and_5xx_and_dropped_connections(tmp_path, scripted, capsys):
    Scripted.script = ["429", "ok", "500", "reset", "ok", "badstatus", "ok"]
    code, io = run_eval_cli(tmp_path, scripted, capsys)
    assert code == 0, io.err
    res = json.loads((tmp_path / "ev" / "winrate.json").read_text())
    assert res["n"] == 3 and res["annotator_stats"]["retries"] == 4 and res["annotator_stats"]["failed"] == 0
    assert "HTTP 429, retry 1/2 in 0.1 s" in io.err and "HTTP 500" in io.err and "connection dropped" in io.err


def test_api_items_failing_in_a_row_stop_the_command_and_write_nothing(tmp_path, scripted, capsys):
    Scripted.script = ["ok"] + ["503"] * 60
    code, io = run_eval_cli(tmp_path, scripted, capsys, 6, "--api-concurrency", "1")
    assert code == 2 and "3 items in a row failed (HTTP 503)" in io.err
    assert Scripted.count == 1 + 3 * 3  # one answer, then three items of three attempts
    assert not (tmp_path / "ev").exists()
    Scripted.script, Scripted.count = ["ok"] + ["503"] * 60, 0  # with 4 requests in flight: the same stop, a few more attempts
    code, io = run_eval_cli(tmp_path, scripted, capsys, 6)
    assert code == 2 and "in a row failed (HTTP 503)" in io.err and Scripted.count <= 1 + (3 + 3) * 3
    assert not (tmp_path / "ev").exists()


def test_api_no_usable_verdict_is_an_error_not_nan(tmp_path, capsys):
    code, io = None, None
    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Handler.script = ["garbage"] * 10
    try:
        code, io = run_eval_cli(tmp_path, f"http://127.0.0.1:{srv.server_port}/v1", capsys)
    finally:
        srv.shutdown()
    assert code == 2 and "no usable verdict" in io.err and not (tmp_path / "ev").exists()


def test_retry_after_parses_seconds_and_dates():
    from email.utils import formatdate

    from rlop.evaluation.annotators import retry_after_seconds

    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 5 < retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10


def test_cache_makes_a_rerun_free_and_counts_tokens_and_cost(tmp_path, scripted, monkeypatch, annotation_cache):
    from rlop.cli import main

    monkeypatch.setenv("RLOP_API_KEY", "sk-never-written")
    refs, outs = eval_files(tmp_path, 4)
    args = ["eval", "--annotator", "api", "--api-base", scripted, "--eval-file", str(refs), "--outputs", str(outs),
            "--api-price-input", "1.5", "--api-price-output", "10"]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "winrate.json").read_text())
    assert Scripted.count == 4 and first["annotator_stats"]["requests"] == 4 and first["annotator_stats"]["cache_hits"] == 0
    assert first["annotator_stats"]["prompt_tokens"] == 400 and first["annotator_stats"]["completion_tokens"] == 12
    assert first["annotator_stats"]["cost_usd"] == pytest.approx((400 * 1.5 + 12 * 10) / 1e6)
    assert main([*args, "--out", str(tmp_path / "second")]) == 0  # a rerun: every verdict from the cache
    second = json.loads((tmp_path / "second" / "winrate.json").read_text())
    assert Scripted.count == 4 and second["annotator_stats"]["requests"] == 0 and second["annotator_stats"]["cache_hits"] == 4
    assert second["win_rate"] == first["win_rate"] and second["scores"] == first["scores"]
    assert main([*args, "--api-cache", "none", "--out", str(tmp_path / "third")]) == 0  # the cache can be turned off
    assert Scripted.count == 8
    for f in [annotation_cache, *(tmp_path / "first").rglob("*"), *(tmp_path / "second").rglob("*")]:
        assert f.is_dir() or b"sk-never-written" not in f.read_bytes(), f


def test_collect_with_api_annotator_on_any_instructions(tmp_path, scripted, capsys):
    """Step 1 on instructions that are not sandbox tasks: an API judge labels the policy's two samples."""
    from rlop.cli import main
    from tests.conftest import write_jsonl

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"instruction": f"Write a word about topic {i}."} for i in range(4)])
    Scripted.script = ["500"]  # the first request fails once and is retried
    assert main(["collect", "--preset", "tiny", "--prompts-file", str(prompts), "--annotator", "api", "--api-base", scripted,
                 "--api-backoff", "0.01", "--out", str(tmp_path / "c")]) == 0
    rows = [json.loads(l) for l in (tmp_path / "c" / "preferences.jsonl").read_text().splitlines()]
    stats = json.loads((tmp_path / "c" / "collect_stats.json").read_text())
    assert len(rows) == stats["pairs"] and stats["pairs"] + sum(stats["left_out"].values()) == 4
    # the scripted judge always prefers the output shown second; the annotator shows each pair in a
    # seeded order drawn from its texts and maps the verdict back: 2 where shown as sampled, 1 where swapped
    from rlop.config import build_config
    from rlop.sandbox.collect import CollectConfig

    order = APIAnnotator(base_url=scripted, seed=build_config(CollectConfig, "tiny").seed, cache=None)
    shown_swapped = [order._presented(InstructionExample(r["instruction"], r["input"]), r["output_1"], r["output_2"])[1] for r in rows]
    assert [r["preference"] for r in rows] == [1 if s else 2 for s in shown_swapped]
    assert stats["annotator_stats"]["retries"] == 1 and stats["annotator_stats"]["requests"] == stats["pairs"] + 1
    code = main(["collect", "--preset", "tiny", "--prompts-file", str(prompts), "--out", str(tmp_path / "d")])  # noisy needs sandbox tasks
    assert code == 2 and "--annotator reward or api" in capsys.readouterr().err


class Slow(BaseHTTPRequestHandler):
    """Prefers output (b) after a short wait, and records how many requests were in flight at once."""

    lock = threading.Lock()
    in_flight = 0
    most = 0

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        with Slow.lock:
            Slow.in_flight += 1
            Slow.most = max(Slow.most, Slow.in_flight)
        time.sleep(0.05)
        with Slow.lock:
            Slow.in_flight -= 1
        reply(self, "Output (b)")

    def log_message(self, *a):
        pass


def test_requests_run_concurrently_within_the_bound(tmp_path):
    from http.server import ThreadingHTTPServer

    from rlop.cli import main

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    refs, outs = eval_files(tmp_path, 9)
    results = {}
    try:
        for k in (1, 3):
            Slow.most = 0
            assert main(["eval", "--annotator", "api", "--api-base", f"http://127.0.0.1:{srv.server_port}/v1", "--api-concurrency", str(k),
                         "--api-cache", "none", "--eval-file", str(refs), "--outputs", str(outs), "--out", str(tmp_path / f"c{k}")]) == 0
            results[k] = (Slow.most, json.loads((tmp_path / f"c{k}" / "winrate.json").read_text()))
    finally:
        srv.shutdown()
    assert results[1][0] == 1 and 1 < results[3][0] <= 3
    assert results[1][1]["scores"] == results[3][1]["scores"] and results[3][1]["annotator_stats"]["requests"] == 9


class ByModel(BaseHTTPRequestHandler):
    """model 'first' always answers Output (a); any other model prefers the output holding LONG."""

    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        ByModel.seen.append((body["model"], prompt))
        if body["model"] == "first":
            answer = "Output (a)"
        else:
            a = prompt.split("(a)")[1].split("(b)")[0]
            answer = "Output (a)" if "LONG" in a else "Output (b)"
        reply(self, answer)

    def log_message(self, *a):
        pass


def test_annotator_pool_and_label_flips(tmp_path, capsys):
    import yaml

    from rlop.cli import main
    from tests.conftest import write_jsonl

    srv = HTTPServer(("127.0.0.1", 0), ByModel)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    n = 40
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"instruction": f"q{i}", "output": f"ref {i}"} for i in range(n)])
    outs = write_jsonl(tmp_path / "outs.jsonl", [{"instruction": f"q{i}", "output": f"LONG answer {i}"} for i in range(n)])
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump([{"model": "first"},
                                    {"model": "careful", "prompt": "POOL-2 Which is better for {instruction}?\n(a) {a}\n(b) {b}\nSay Output (a) or Output (b)."}]))
    base = ["eval", "--annotator", "api", "--api-base", f"http://127.0.0.1:{srv.server_port}/v1", "--eval-file", str(refs), "--outputs", str(outs),
            "--api-pool", str(pool), "--api-concurrency", "1"]
    try:
        ByModel.seen = []
        assert main([*base, "--out", str(tmp_path / "pool")]) == 0
        res = json.loads((tmp_path / "pool" / "winrate.json").read_text())
        per_model = res["annotator_stats"]["per_model"]
        assert set(per_model) == {"first", "careful"} and sum(per_model.values()) == n and min(per_model.values()) >= n // 4
        assert all(("POOL-2" in p) == (m == "careful") for m, p in ByModel.seen)  # each member with its own template
        # 'careful' always finds the LONG model output; 'first' picks whichever was shown first (a seeded coin)
        careful = [s for s, (m, _) in zip(res["scores"], ByModel.seen) if m == "careful"]
        assert careful and all(s == 1.0 for s in careful)
        assert main([*base, "--api-label-flip", "0.5", "--out", str(tmp_path / "flip")]) == 0  # every verdict a coin flip
        flip = json.loads((tmp_path / "flip" / "winrate.json").read_text())
        assert flip["annotator_stats"]["flipped"] == n and flip["annotator_stats"]["requests"] == 0  # the replies came from the cache
        assert 0.2 < flip["win_rate"] < 0.8
        assert main([*base, "--api-label-flip", "0.25", "--out", str(tmp_path / "quarter")]) == 0
        assert 0 < json.loads((tmp_path / "quarter" / "winrate.json").read_text())["annotator_stats"]["flipped"] < n
    finally:
        srv.shutdown()
    pool.write_text(yaml.safe_dump([{"model": "m", "prompt": "no fields here"}]))
    assert main([*base, "--out", str(tmp_path / "bad")]) == 2
    assert "needs {instruction}, {a} and {b}" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_reward_annotator_scores_each_distinct_output_once_with_the_pairwise_verdicts():
    """A reference compared with many outputs is scored once, in batches; the verdicts are
    those of scoring each pair on its own (higher score wins)."""
    from rlop.evaluation.annotators import RewardAnnotator

    ann = RewardAnnotator("tiny")
    examples = [InstructionExample(f"task {i}", "", "the reference") for i in range(3)]
    outputs = ["a", "two words", "a longer answer with quite a few more words in it", "the reference"]
    items = [(ex, ex.output, o) for ex in examples for o in outputs]
    scored: list[int] = []
    score_texts = ann.reward.scorer.score_texts
    ann.reward.scorer.score_texts = lambda texts, progress=None: scored.append(len(texts)) or score_texts(texts, progress)
    ann.prefetch(items)
    verdicts = [ann.prefer(*item) for item in items]
    assert scored == [3 * 4]  # per instruction: the reference and 3 other outputs; an identical output is a tie
    alone = RewardAnnotator("tiny")
    expected = []
    for ex, ref, o in items:
        a, b = alone.reward([ex, ex], [ref, o])
        expected.append(0 if o == ref else 1 if a >= b else 2)
    assert verdicts == expected and 0 in verdicts and {1, 2} <= set(verdicts)


def test_batched_scores_follow_the_input_order_and_equal_unbatched_ones():
    from rlop.models.reward_model import RewardModelScorer

    scorer = RewardModelScorer("tiny", batch_size=2)
    texts = ["a long text " * 9, "short", "a middle text here", "x", "another fairly long text " * 3]
    batched = scorer.score_texts(texts)
    alone = [scorer.score_texts([t])[0] for t in texts]
    assert batched == pytest.approx(alone, abs=1e-5)
