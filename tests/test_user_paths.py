"""Smaller things a user notices: bounded prompt lengths, readable outputs, no duplicate leaks,
dropped over-long demonstrations counted, empty outputs evaluated, only the stages a method needs."""

import json
import os

from rlop.cli import main
from tests.conftest import write_jsonl

PAIR = {"instruction": "Say hi", "input": "", "output_1": "hi", "output_2": "bye", "preference": 1}


def test_huge_instruction_is_left_truncated_and_reported(tmp_path, caplog):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "word " * 20_000 + "Finally, say hi."}, {"instruction": "Say hi"}])
    with caplog.at_level("WARNING"):
        code = main(["sample", "--preset", "tiny", "--prompts-file", str(prompts), "--n", "2", "--out", str(tmp_path / "s")])
    assert code == 0 and "left-truncated 1 prompt(s)" in caplog.text, caplog.text
    rows = [json.loads(x) for x in (tmp_path / "s" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["responses"]) == 2 for r in rows)


def test_encode_prompts_keeps_the_end_of_a_long_prompt(tiny_tok):
    from rlop.models.generation import encode_prompts

    enc, cut = encode_prompts(tiny_tok, ["a b c d e f g h i j k l m n o p", "short"], limit=5)
    assert cut == 1 and enc["input_ids"].shape[1] == 5
    assert tiny_tok.decode(enc["input_ids"][0]).strip().endswith("o p")
    assert enc["attention_mask"][1].tolist()[:3] == [0, 0, 0]  # left padding


def test_outputs_are_readable_by_the_users_group(tmp_path, capsys):
    from rlop.utils import atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
        assert main(["sandbox", "export", "--out", str(tmp_path / "x"), "--sft", "5", "--preference", "5", "--unlabeled", "5",
                     "--val", "5", "--eval", "5"]) == 0
    finally:
        os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "x" / "eval.jsonl").stat().st_mode & 0o777 == 0o644


def test_repeated_pairs_never_reach_the_held_out_set(tmp_path):
    from rlop.training.reward_trainer import RewardConfig, load_reward_data

    rows = [{**PAIR, "instruction": f"q{i % 10}"} for i in range(100)]  # 10 distinct pairs, each 10 times
    f = write_jsonl(tmp_path / "p.jsonl", rows)
    train, ev, _, _, _ = load_reward_data(RewardConfig(model="tiny", train_file=str(f), eval_holdout=5))
    keys = lambda ps: {(p.instruction, p.chosen, p.rejected) for p in ps}  # noqa: E731
    assert len(train) + len(ev) == 10 and not keys(train) & keys(ev)


def test_sft_leaves_out_over_long_demonstrations_and_says_so(tiny_tok, caplog):
    from rlop.data.io import InstructionExample
    from rlop.training.sft import build_sft_dataset

    exs = [InstructionExample("Say hi", "", "hi"), InstructionExample("Say hi", "", "long " * 300)]
    with caplog.at_level("WARNING"):
        ds = build_sft_dataset(tiny_tok, exs, max_length=64)
    assert len(ds) == 1 and "left out 1 of 2 demonstrations" in caplog.text


def test_empty_model_output_is_evaluated_and_loses(tmp_path, capsys):
    from rlop.sandbox.world import split_records

    refs = split_records("eval")[:4]
    outs = write_jsonl(tmp_path / "o.jsonl", [{"instruction": r["instruction"], "input": r["input"], "output": ""} for r in refs])
    code = main(["eval", "--outputs", str(outs), "--max-prompts", "4"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["n"] == 4 and res["win_rate"] == 0.0


def test_methods_sft_runs_only_what_sft_needs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "tiny", "--methods", "sft", "--sft-examples", "16", "--eval-prompts", "4", "--out", str(out)]) == 0
    stages = {p.name for p in out.iterdir() if p.is_dir()}
    assert stages == {"sft", "outputs-sft"}, stages
    assert set(json.loads((out / "results.json").read_text())["methods"]) == {"sft"}
    # --force removes only what rlop wrote in the stage folders
    (out / "sft" / "my-notes.txt").write_text("keep")
    assert main(["run", "--preset", "tiny", "--methods", "sft", "--sft-examples", "16", "--eval-prompts", "4", "--out", str(out), "--force", "sft"]) == 0
    assert (out / "sft" / "my-notes.txt").read_text() == "keep" and (out / "sft" / "config.json").exists()
