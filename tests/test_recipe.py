"""rlop run on a recipe of the user's own files, labelled and judged by an API annotator
(a real HTTP server on 127.0.0.1 speaking the chat-completions protocol)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from rlop.sandbox.world import load_split
from tests.conftest import SHARED, write_jsonl
from tests.helpers_http import fail, reply

KEY = "sk-recipe-test-never-written"


class Judge(BaseHTTPRequestHandler):
    """Prefers the longer output, whichever position it is in; answers 500 once and 429 (Retry-After) once first."""

    script: list = []
    requests = 0
    keys: set = set()

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Judge.requests += 1
        Judge.keys.add(self.headers.get("Authorization"))
        action = Judge.script.pop(0) if Judge.script else "ok"
        if action != "ok":
            fail(self, int(action))
            return
        prompt = body["messages"][0]["content"]
        a = prompt.split("# Output (a)")[1].split("# Output (b)")[0]
        b = prompt.split("# Output (b)")[1].split("Answer with")[0]
        reply(self, "Output (a)" if len(a) >= len(b) else "Output (b)", {"prompt_tokens": 50, "completion_tokens": 4})

    def log_message(self, *a):
        pass


def own_files(d):
    """Sandbox instructions with the task specs stripped: data the gold scorer cannot judge."""
    def plain(split, n, output=False):
        rows = []
        for r in load_split(split)[:n]:
            row = {"instruction": r["instruction"], "input": r.get("input", "")}
            if output:
                row["output"] = r["output"]
            rows.append(row)
        return rows

    sft = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
           for r in plain("sft", 256, output=True)]
    return {"sft_file": str(write_jsonl(d / "sft.jsonl", sft)),
            "preference_prompts_file": str(write_jsonl(d / "prefs.jsonl", plain("preference", 24))),
            "unlabeled_file": str(write_jsonl(d / "unlabeled.jsonl", plain("unlabeled", 64))),
            "heldout_file": str(write_jsonl(d / "heldout.jsonl", plain("val", 8))),
            "eval_file": str(write_jsonl(d / "eval.jsonl", plain("eval", 12, output=True)))}


@pytest.mark.slow
def test_recipe_with_api_annotators_caches_and_never_writes_the_key(tmp_path, monkeypatch):
    from rlop.cli import main

    srv = HTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_port}/v1"
    Judge.script, Judge.requests, Judge.keys = ["500", "429"], 0, set()
    monkeypatch.setenv("RLOP_API_KEY", KEY)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "run": {**own_files(tmp_path), "methods": "sft,ppo", "eval_annotator": "api", "preference_prompts": 24, "eval_prompts": 12},
        "collect": {"annotator": "api", "api_base": base, "api_backoff": 0.01},
        "eval": {"api_base": base, "api_backoff": 0.01},
    }))
    try:
        assert main(["run", "--preset", "tiny", "--config", str(recipe), "--out", str(tmp_path / "one")]) == 0
        first = Judge.requests
        res = json.loads((tmp_path / "one" / "results.json").read_text())
        stats = json.loads((tmp_path / "one" / "collect" / "collect_stats.json").read_text())
        assert stats["annotator_stats"]["retries"] == 2  # the 500 and the 429 were retried, not fatal
        assert stats["pairs"] + sum(stats["left_out"].values()) == 24
        assert res["eval_annotator"] == "api" and set(res["methods"]) == {"sft", "ppo"}
        assert all(m["n"] == 12 and m["gold_success"] is None for m in res["methods"].values())
        assert "left_out" in res["diagnostics"]  # no gold scores for the user's own data
        assert f"Bearer {KEY}" in Judge.keys
        # the same recipe into a new folder: every stage reruns, every verdict comes from the cache
        assert main(["run", "--preset", "tiny", "--config", str(recipe), "--out", str(tmp_path / "two")]) == 0
        assert Judge.requests == first, "a rerun paid for annotations again"
        again = json.loads((tmp_path / "two" / "collect" / "collect_stats.json").read_text())["annotator_stats"]
        assert again["requests"] == 0 and again["cache_hits"] == stats["pairs"] + stats["left_out"]["no_verdict"]
        # changing one data file redoes exactly the stages that read it (and those after them)
        before = {d.name: json.loads((d / "stage.json").read_text())["key"] for d in (tmp_path / "one").iterdir() if (d / "stage.json").exists()}
        ev = tmp_path / "eval.jsonl"
        ev.write_text(ev.read_text().replace('"output": "', '"output": "Note: ', 1))
        assert main(["run", "--preset", "tiny", "--config", str(recipe), "--out", str(tmp_path / "one")]) == 0
        after = {d.name: json.loads((d / "stage.json").read_text())["key"] for d in (tmp_path / "one").iterdir() if (d / "stage.json").exists()}
        assert {s for s in before if before[s] != after[s]} == {"outputs-sft", "outputs-ppo"}
    finally:
        srv.shutdown()
    for f in [*(tmp_path / "one").rglob("*"), *(tmp_path / "two").rglob("*")]:
        assert f.is_dir() or KEY.encode() not in f.read_bytes(), f


@pytest.mark.skipif(not (SHARED / "alpaca").exists(), reason="../shared/data not present")
def test_alpacafarm_example_recipe_splits_and_validates(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from rlop.config import build_config
    from rlop.data.io import load_instructions
    from rlop.pipeline.run_config import RunConfig

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "examples" / "alpacafarm" / "make_splits.py"), "--shared", str(SHARED), "--out",
                          str(tmp_path / "data")], check=True, capture_output=True, text=True, timeout=900).stdout
    counts = {name: len(load_instructions(tmp_path / "data" / f"{name}.jsonl")) for name in ("sft", "preference", "unlabeled", "val", "eval")}
    assert counts == {"sft": 1190, "preference": 1190, "unlabeled": 2380, "val": 240, "eval": 805}, out  # Table 1's 5 : 5 : 10 : 1
    assert all(e.output for e in load_instructions(tmp_path / "data" / "eval.jsonl", require_output=True))
    sft = {(e.instruction, e.input) for e in load_instructions(tmp_path / "data" / "sft.jsonl")}
    assert not sft & {(e.instruction, e.input) for e in load_instructions(tmp_path / "data" / "unlabeled.jsonl")}
    cfg = build_config(RunConfig, "cpu", root / "examples" / "alpacafarm" / "recipe.yaml", section="run")
    assert cfg.eval_annotator == "api" and cfg.sft_file.endswith("sft.jsonl")
    judged = build_config(RunConfig, "cpu", root / "examples" / "alpacafarm" / "recipe-reward.yaml", section="run")
    assert (judged.eval_annotator, judged.eval_reward_model) == ("reward", "runs/af-judge/rm")
    assert {k: v for k, v in vars(judged).items() if not k.startswith("eval_")} == {k: v for k, v in vars(cfg).items() if not k.startswith("eval_")}
