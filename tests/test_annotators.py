"""The OpenAI-compatible API annotator against a local HTTP server (loopback only)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from rlop.data.io import InstructionExample
from rlop.evaluation.annotators import APIJudge
from rlop.evaluation.winrate import win_rate


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
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
    judge = APIJudge(base_url=server, api_key="k", model="m", retries=2, backoff=0.01)
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
    judge = APIJudge(base_url=server, retries=1, backoff=0.01)
    Handler.script = ["500", "500"]
    assert judge.prefer(InstructionExample("q", "", "r"), "a", "b") is None
    assert judge.stats["failed"] == 1


def test_parse():
    assert APIJudge.parse("Output (b)") == "b"
    assert APIJudge.parse("I prefer output (a).") == "a"
    assert APIJudge.parse("Output (a) or Output (b)") is None
    assert APIJudge.parse("neither") is None
