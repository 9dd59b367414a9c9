"""examples/own-data/: the recipe a new user copies, run end to end on the tiny preset with the
model as a local folder and the judge an OpenAI-compatible server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from tests.helpers_http import reply

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own-data"


class ReferenceJudge(BaseHTTPRequestHandler):
    """Prefers the longer output, in either position (a stand-in judge)."""

    requests = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ReferenceJudge.requests += 1
        prompt = body["messages"][0]["content"]
        a = prompt.split("# Output (a)")[1].split("# Output (b)")[0]
        b = prompt.split("# Output (b)")[1].split("Answer with")[0]
        reply(self, "Output (a)" if len(a) >= len(b) else "Output (b)")

    def log_message(self, *a):
        pass


def test_every_sample_record_of_every_format_is_read():
    from rlop.data.io import load_instructions, load_preferences

    f = EXAMPLE / "formats"
    for name in ("sft-prompt-completion", "sft-messages", "eval-messages"):
        ex = load_instructions(f / f"{name}.jsonl", require_output=True)
        assert len(ex) == 2 and all(e.instruction and e.output for e in ex), name
    assert len(load_instructions(f / "prompts-trl.jsonl")) == 2
    alpacafarm, conversational = load_preferences(f / "prefs-alpacafarm.jsonl"), load_preferences(f / "prefs-trl-conversational.jsonl")
    assert [(p.chosen, p.rejected) for p in alpacafarm] == [(p.chosen, p.rejected) for p in conversational]
    data = EXAMPLE / "data"
    assert len(load_instructions(data / "demos.jsonl", require_output=True)) == 20
    assert len(load_preferences(data / "prefs.jsonl")) == 24
    assert len(load_instructions(data / "eval.jsonl", require_output=True)) == 12


def test_the_own_data_recipe_runs_on_the_tiny_preset_with_a_local_model(tmp_path, monkeypatch, capsys):
    from transformers import LlamaForCausalLM

    from rlop.cli import main
    from rlop.models.loading import load_tokenizer, tiny_config

    model = tmp_path / "my-model"  # a user's local model folder (here a random two-layer Llama)
    tok = load_tokenizer("tiny")
    LlamaForCausalLM(tiny_config(tok)).save_pretrained(model)
    tok.save_pretrained(model)
    srv = HTTPServer(("127.0.0.1", 0), ReferenceJudge)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("RLOP_API_KEY", "sk-own-data-test")
    recipe = yaml.safe_load((EXAMPLE / "recipe.yaml").read_text())
    root = EXAMPLE.parents[1]
    for k in ("sft_file", "preferences_file", "unlabeled_file", "eval_file"):
        recipe["run"][k] = str(root / recipe["run"][k])  # the recipe's paths are relative to the repository root
    recipe["run"]["eval_prompts"] = 8
    recipe["sft"]["model"] = str(model)
    recipe["eval"]["api_base"] = f"http://127.0.0.1:{srv.server_port}/v1"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    try:
        assert main(["run", "--preset", "tiny", "--config", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run")]) == 0
    finally:
        srv.shutdown()
    out = capsys.readouterr().out
    assert "eval_file" in out and "the evaluation uses the first 8 of its 12 records (raise eval_prompts to use more)" in out
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["methods"]) == {"sft", "ppo", "rlp-spg"} and all(m["n"] == 8 for m in res["methods"].values())
    assert ReferenceJudge.requests >= 3 * 8
    sft_cfg = json.loads((tmp_path / "run" / "sft" / "stage.json").read_text())["config"]
    assert sft_cfg["model"] == str(model) and not (tmp_path / "run" / "collect").exists()  # step 1 came from preferences_file
    assert (tmp_path / "run" / "report.md").exists()


def test_a_record_cap_that_cuts_a_user_file_is_announced_and_a_sandbox_split_is_not(tmp_path):
    from rlop.config import build_config
    from rlop.pipeline.recipe import cut_lines
    from rlop.pipeline.run_config import RunConfig

    rows = [json.dumps({"instruction": f"q{i}", "input": ""}) for i in range(30)]
    (tmp_path / "u.jsonl").write_text("\n".join(rows) + "\n")
    run = build_config(RunConfig, "tiny", overrides={"unlabeled_file": str(tmp_path / "u.jsonl"), "unlabeled_prompts": 16})
    lines = cut_lines(run, ["sft", "ppo", "rlp-spg"], ppo_max_prompts=64)
    assert lines == [f"unlabeled_file {tmp_path / 'u.jsonl'}: step 4 samples the first 16 of its 30 records (raise unlabeled_prompts to use more)"]
    assert cut_lines(run, ["sft", "ppo"], ppo_max_prompts=20) == [
        f"unlabeled_file {tmp_path / 'u.jsonl'}: PPO draws its prompts from the first 20 of its 30 records (raise ppo: max_prompts to use more)"]
    assert cut_lines(build_config(RunConfig, "tiny"), ["sft", "ppo", "rlp-spg"], 1) == []  # the sandbox's splits are rlop's own
