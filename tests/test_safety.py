"""What a new user can get wrong: each case exits 2 with a message naming the problem,
touches no file of the user's and leaves nothing half-written (issue: safe by default)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlop.cli import main
from tests.conftest import repo_env, write_jsonl

SPEC = {"type": "number", "answer": "4", "kind": "answer"}


def cli(argv, capsys):
    """Run ``rlop ARGV`` in-process: (exit code, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def snapshot(root: Path) -> dict:
    """Every file below ``root`` with its bytes (to prove nothing was touched)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path):
    """A user's folder with a precious file, and small inputs."""
    user = tmp_path / "d"
    user.mkdir()
    (user / "thesis.txt").write_text("four years of work")
    write_jsonl(tmp_path / "plain.jsonl", [{"instruction": "Say hi", "output": "hi"}])
    write_jsonl(tmp_path / "long.jsonl", [{"instruction": "Say hi", "output": "word " * 400}])
    write_jsonl(tmp_path / "ref.jsonl", [{"instruction": "q", "output": "r"}])
    write_jsonl(tmp_path / "badref.jsonl", [{"instruction": "q", "output": "r", "spec": {"type": "number"}}])
    write_jsonl(tmp_path / "outs.jsonl", [{"instruction": "q", "output": "r"}])
    (tmp_path / "adir").mkdir()
    (tmp_path / "a_file").write_text("keep me")
    return tmp_path


# (name, argv with {t} = the test folder, message fragment); every case must exit 2 and leave {t} as it was
CASES = [
    ("export_into_user_folder", "sandbox export --out {t}/d", "not written by rlop"),
    ("sft_into_user_folder", "sft --preset tiny --out {t}/d", "not written by rlop"),
    ("reward_into_user_folder", "reward --preset tiny --out {t}/d", "not written by rlop"),
    ("out_is_a_file", "sandbox export --out {t}/a_file", "not a directory"),
    ("unknown_yaml_key", "sft --preset tiny --config {t}/unknown.yaml --out {t}/o", "unknown key 'fooo'"),
    ("misspelled_section", "sft --preset tiny --config {t}/sfft.yaml --out {t}/o", "did you mean sft"),
    ("scalar_section", "sft --preset tiny --config {t}/scalar.yaml --out {t}/o", "section 'sft:' must be a mapping"),
    ("misplaced_key", "sft --preset tiny --config {t}/misplaced.yaml --out {t}/o", "unknown option 'rep_loss'"),
    ("views_twice", "reward --preset tiny --views a --views-file b --out {t}/o", "same option"),
    ("lambda_twice", "reward --preset tiny --lambda 1 --rep-lambda 2 --out {t}/o", "same option"),
    ("negative_epochs", "sft --preset tiny --epochs -3 --out {t}/o", "epochs"),
    ("negative_max_prompts", "eval --outputs {t}/outs.jsonl --max-prompts -5", "max_prompts"),
    ("zero_samples", "sample --preset tiny --n 0 --out {t}/o", "option n (--n): must be >= 1"),
    ("negative_lr", "reward --preset tiny --learning-rate=-1e-5 --out {t}/o", "learning_rate"),
    ("zero_batch", "sft --preset tiny --per-device-batch-size 0 --out {t}/o", "per_device_batch_size"),
    ("bon_n_zero", "bon --preset tiny --reward gold --n 0 --out {t}/o", "option n (--n)"),
    ("not_a_number", "ppo --preset tiny --reward gold --kl-coef lots --out {t}/o", "expects float"),
    ("unknown_rep_loss", "reward --preset tiny --rep-loss magic --out {t}/o", "invalid choice"),
    ("unknown_scheduler", "sft --preset tiny --lr-scheduler zigzag --out {t}/o", "invalid choice"),
    ("unknown_method", "run --preset tiny --methods sft,magic --out {t}/o", "unknown 'magic'"),
    ("unknown_force_stage", "run --preset tiny --force nosuch --out {t}/o", "invalid choice"),
    ("data_file_is_dir", "sft --preset tiny --train-file {t}/adir --out {t}/o", "is a directory"),
    ("all_sft_too_long", "sft --preset tiny --train-file {t}/long.jsonl --max-length 32 --out {t}/o", "longer than max_length"),
    ("collect_without_specs", "collect --preset tiny --prompts-file {t}/plain.jsonl --out {t}/o", "field 'spec': missing"),
    ("eval_missing_spec", "eval --outputs {t}/outs.jsonl --eval-file {t}/ref.jsonl", "field 'spec': missing"),
    ("eval_bad_spec", "eval --outputs {t}/outs.jsonl --eval-file {t}/badref.jsonl", "field 'spec'"),
    ("unknown_sandbox_split", "sample --preset tiny --prompts-file sandbox:nosuch --out {t}/o", "unknown sandbox split"),
    ("mib_without_views", "reward --preset tiny --rep-loss mib --out {t}/o", "needs --views-file"),
    ("dir_is_not_a_model", "sft --preset tiny --model {t}/adir --out {t}/o", "no config.json"),
    ("missing_model_dir", "sft --preset tiny --model ./no/such/model --out {t}/o", "does not exist"),
    ("spg_without_samples", "spg --preset tiny --reward-model x --out {t}/o", "--samples is required"),
    ("ppo_without_reward", "ppo --preset tiny --out {t}/o", "--reward is required"),
    ("bon_without_reward", "bon --preset tiny --out {t}/o", "--reward is required"),
    ("report_on_user_folder", "report {t}/d", "not a finished rlop run"),
    ("run_with_unused_section", "run --preset tiny --config {t}/evalsec.yaml --out {t}/o", "does not use section(s) eval"),
    ("seeds_not_numbers", "run --preset tiny --seeds 0,one --out {t}/o", "expected comma-separated integers"),
    ("seeds_repeated", "run --preset tiny --seeds 1,1 --out {t}/o", "a seed is repeated"),
    ("shared_without_seeds", "run --preset tiny --shared-stages sft --out {t}/o", "needs --seeds"),
    ("share_unshareable_stage", "run --preset tiny --seeds 0,1 --shared-stages sft,rm-spg --out {t}/o", "'rm-spg' cannot be shared"),
    ("share_without_its_input", "run --preset tiny --seeds 0,1 --shared-stages sft,rm --out {t}/o", "rm reads collect"),
]


@pytest.mark.parametrize("name,argv,message", CASES, ids=[c[0] for c in CASES])
def test_user_error_exits_2_and_touches_nothing(world, capsys, name, argv, message):
    (world / "unknown.yaml").write_text("fooo: 1\n")
    (world / "sfft.yaml").write_text("sfft:\n  epochs: 1\n")
    (world / "scalar.yaml").write_text("sft: 3\n")
    (world / "misplaced.yaml").write_text("sft:\n  rep_loss: mib\n")
    (world / "evalsec.yaml").write_text("eval:\n  annotator: api\n")
    before = snapshot(world)
    code, err = cli(argv.format(t=world).split(), capsys)
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert snapshot(world) == before
    assert not (world / "o").exists()


def test_unknown_hub_model_offline_is_a_clean_error(tmp_path):
    env = repo_env(HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "rlop.cli", "sft", "--preset", "tiny", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "rlop: error: cannot load model 'no-such-org/no-such-model'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_overwrite_writes_beside_user_files_and_never_replaces_them(world, capsys):
    d = world / "d"
    assert cli(["sandbox", "export", "--out", d, "--overwrite", "--sft", 5, "--preference", 5, "--unlabeled", 5, "--val", 5, "--eval", 5], capsys)[0] == 0
    assert (d / "thesis.txt").read_text() == "four years of work" and (d / "sft.jsonl").exists()
    # now an rlop output of this kind: a rerun needs no --overwrite, keeps files the user added, and replaces its own
    (d / "notes.txt").write_text("mine")
    assert cli(["sandbox", "export", "--out", d, "--seed", 1, "--sft", 5, "--preference", 5, "--unlabeled", 5, "--val", 5, "--eval", 5], capsys)[0] == 0
    assert (d / "notes.txt").read_text() == "mine" and (d / "thesis.txt").exists()
    assert json.loads((d / "config.json").read_text())["seed"] == 1
    # a different kind of output is refused, even though rlop wrote this folder
    code, err = cli(["sample", "--preset", "tiny", "--out", d], capsys)
    assert code == 2 and "holds an rlop 'sandbox' output" in err


def test_overwrite_refuses_to_replace_a_user_file_of_the_same_name(world, capsys):
    d = world / "clash"
    d.mkdir()
    (d / "sft.jsonl").write_text("the user's own sft.jsonl")
    code, err = cli(["sandbox", "export", "--out", d, "--overwrite", "--sft", 5, "--preference", 5, "--unlabeled", 5, "--val", 5, "--eval", 5], capsys)
    assert code == 2 and "would replace 'sft.jsonl'" in err
    assert (d / "sft.jsonl").read_text() == "the user's own sft.jsonl"


def test_out_dot_writes_into_the_current_folder(tmp_path, capsys, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert cli(["sandbox", "export", "--out", ".", "--sft", 5, "--preference", 5, "--unlabeled", 5, "--val", 5, "--eval", 5], capsys)[0] == 0
    assert (here / "eval.jsonl").exists() and not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob(".*old*"))
    (here / "mine.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    code, err = cli(["sandbox", "export", "--out", "elsewhere/../here", "--sft", 5, "--preference", 5, "--unlabeled", 5, "--val", 5, "--eval", 5], capsys)
    assert code == 0 and (here / "mine.txt").read_text() == "x"


def test_failed_command_leaves_no_output_folder(world, capsys):
    code, err = cli(["sft", "--preset", "tiny", "--train-file", world / "long.jsonl", "--max-length", 32, "--out", world / "new" / "o"], capsys)
    assert code == 2 and (not (world / "new").exists() or not any((world / "new").iterdir()))


HOLD = """
import sys, time
from rlop import outputs
with outputs.claim(sys.argv[1], "sandbox"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_lock_names_the_holder_and_a_killed_holder_is_taken_over(tmp_path, capsys):
    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                              env=repo_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = cli(["sandbox", "export", "--out", out, "--sft", 5], capsys)
        assert code == 2 and f"another rlop process (PID {holder.pid})" in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert cli(["sandbox", "export", "--out", out, "--sft", 5, "--preference", 5, "--unlabeled", 5, "--val", 5, "--eval", 5], capsys)[0] == 0


def test_second_rlop_run_on_the_same_folder_stops_at_once(tmp_path):
    out = tmp_path / "run"
    from tests.conftest import wait_for

    env = repo_env()
    first = subprocess.Popen([sys.executable, "-m", "rlop.cli", "run", "--preset", "tiny", "--methods", "sft", "--out", str(out)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / "sft" / ".rlop.lock").exists(), "the first run took its stage lock", 300, first)
        second = subprocess.run([sys.executable, "-m", "rlop.cli", "run", "--preset", "tiny", "--methods", "sft", "--out", str(out)],
                                env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and f"PID {first.pid}" in second.stderr, second.stderr
        assert first.poll() is None  # the second stopped while the first still held the folder: it did not wait for it
    finally:
        first.kill()
        first.wait()


def test_every_command_and_option_has_help(capsys):
    from rlop.cli import COMMANDS, build_parser

    parser = build_parser()
    assert cli(["--help"], capsys)[0] == 0
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in COMMANDS:
        assert cli([name, "--help"], capsys)[0] == 0
        for action in sub.choices[name]._actions:
            assert action.help and action.help.strip(), f"rlop {name} {action.option_strings or action.dest} has no help text"


def test_boolean_flags_need_no_value(capsys):
    from rlop.cli import _config, build_parser

    args = build_parser().parse_args(["sft", "--preset", "tiny", "--out", "x", "--trust-remote-code"])
    assert _config("sft", args).trust_remote_code is True
    args = build_parser().parse_args(["ppo", "--out", "x", "--whiten-rewards", "false"])
    assert _config("ppo", args).whiten_rewards is False
