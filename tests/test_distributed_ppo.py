"""PPO on 2 CPU processes (gloo DDP via torchrun) trains like 1 process, and resumes like an uninterrupted run.

Rollouts are decoded greedily (``--top-k 1``) and in generation batches equal to each process's
share, so both runs sample the same tokens: with a near-uniform tiny policy, sampling by
inverse CDF flips a token whenever float32 rounding moves a bin edge past the uniform draw,
which says nothing about the distributed maths. Float32, so that only the order of sums
differs (metrics within 1e-4 relative, parameters within 1e-5)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import free_port, repo_env, resumed_step, wait_for

TORCHRUN = Path(sys.executable).parent / "torchrun"
pytestmark = pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun missing")
KEYS = ("reward_mean", "reward_std", "kl", "entropy", "policy_loss", "value_loss", "approx_kl", "lr")


def _env():
    return repo_env(OMP_NUM_THREADS="1", RLOP_PRECISION="fp32")


def _cmd(sft, out, procs: int, port: int, steps: int, *extra, greedy: bool = True):
    args = ["-m", "rlop.cli", "ppo", "--preset", "tiny", "--policy", str(sft), "--reward", "python:tests.helpers_rewards:letter_e",
            "--steps", str(steps), "--generation-batch-size", "16", *(["--top-k", "1"] if greedy else []), "--out", str(out), *extra]
    if procs == 1:
        return [sys.executable, *args]
    return [str(TORCHRUN), "--nproc_per_node", str(procs), "--master_port", str(port), *args]


def _kill_tree(proc) -> None:
    """SIGKILL ``proc`` and every process below it, and wait until all of them are gone."""
    import psutil

    parent = psutil.Process(proc.pid)
    family = [parent, *parent.children(recursive=True)]
    for p in family:
        p.kill()
    proc.wait(timeout=60)
    _, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, f"still running after SIGKILL: {alive}"


def _metrics(out):
    return [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]


def _policy(out):
    from safetensors.torch import load_file

    return load_file(out / "policy" / "model.safetensors")


def _same_metrics(a, b, keys=KEYS):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in keys:
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-5), (ra["step"], k)


def test_two_processes_match_one(tiny_sft, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_cmd(tiny_sft, one, 1, 0, 3), check=True, env=_env(), capture_output=True, timeout=900)
    r = subprocess.run(_cmd(tiny_sft, two, 2, free_port(), 3), env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    _same_metrics(_metrics(one), _metrics(two))
    a, b = _policy(one), _policy(two)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert any(not torch.equal(a[k], v) for k, v in _policy_of(tiny_sft).items()), "PPO did not change the policy"


def test_rloo_two_processes_match_one(tiny_sft, tmp_path):
    """RLOO's leave-one-out baselines on 2 processes: each keeps whole groups of k = 4 samples. Sampled, not greedy
    (k greedy copies of one response would have no advantage), one row per generation batch (so that no padding or
    batch shape differs between the runs) and one step: from equal weights both sample the same tokens."""
    one, two = tmp_path / "one", tmp_path / "two"
    rloo = ("--advantage-estimator", "rloo", "--samples-per-prompt", "4", "--generation-batch-size", "1")
    subprocess.run(_cmd(tiny_sft, one, 1, 0, 1, *rloo, greedy=False), check=True, env=_env(), capture_output=True, timeout=900)
    r = subprocess.run(_cmd(tiny_sft, two, 2, free_port(), 1, *rloo, greedy=False), env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    _same_metrics(_metrics(one), _metrics(two), tuple(k for k in KEYS if k != "value_loss"))
    assert "value_loss" not in _metrics(two)[0]
    a, b = _policy(one), _policy(two)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert any(not torch.equal(a[k], v) for k, v in _policy_of(tiny_sft).items()), "RLOO did not change the policy"


def _policy_of(path):
    from safetensors.torch import load_file

    return load_file(Path(path) / "model.safetensors")


def test_resume_after_kill_on_two_processes(tiny_sft, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = subprocess.run(_cmd(tiny_sft, full, 2, free_port(), 4, "--save-steps", "2"), env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    proc = subprocess.Popen(_cmd(tiny_sft, killed, 2, free_port(), 4, "--save-steps", "2"), env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest"
    wait_for(lambda: latest.exists() and int(latest.read_text()) >= 2, "a checkpoint of step 2 or later was written", 300, proc)
    _kill_tree(proc)  # torchrun and both ranks (which need not share its process group)
    assert not (killed / "policy").exists(), "the run finished before it was killed"
    before = (killed / "metrics.jsonl").read_text().splitlines()
    r = subprocess.run(_cmd(tiny_sft, killed, 2, free_port(), 4, "--save-steps", "2", "--resume"), env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    step = resumed_step(r.stdout)  # resumed, not restarted (the newest complete checkpoint, 2 or later)
    assert step >= 2 and (killed / "metrics.jsonl").read_text().splitlines()[:step] == before[:step]  # kept byte for byte
    _same_metrics(_metrics(full), _metrics(killed))
    a, b = _policy(full), _policy(killed)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_fsdp2_sharded_step_equals_unsharded(tiny_sft, tmp_path):
    """One PPO step on an FSDP2-sharded actor-critic (2 processes) equals the unsharded step; the
    gathered state dict equals the unsharded one; decoding ends although one process's rows all stop
    at the first token and the other's never do (the done flag is agreed across processes)."""
    script = str(Path(__file__).parent / "dist_fsdp2.py")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run([sys.executable, script, str(one), str(tiny_sft)], check=True, env=_env(), capture_output=True, timeout=600)
    r = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(free_port()), script, str(two), str(tiny_sft)],
                       env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["processes"], b["processes"]) == (1, 2)
    _same_metrics(a["metrics"], b["metrics"])
    assert a["params"].keys() == b["params"].keys() and len(a["params"]) > 20
    for k in a["params"]:
        assert a["params"][k] == pytest.approx(b["params"][k], abs=1e-5), k
    lengths = json.loads((tmp_path / "two.json.lengths").read_text())
    assert lengths[0] == [1, 1, 1, 1] and max(lengths[1]) > 1, lengths


@pytest.mark.slow
def test_rlop_run_tiny_under_accelerate_launch(tmp_path):
    """The whole pipeline on 2 processes (gloo): the stage folders and report of a 1-process run, written once."""
    from rlop.pipeline.run import ALL_METHODS, ORDER

    accelerate = Path(sys.executable).parent / "accelerate"
    config = Path(__file__).parent.parent / "accelerate_configs" / "cpu_2proc.yaml"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    r = subprocess.run([str(accelerate), "launch", "--config_file", str(config), "--main_process_port", str(free_port()), "-m", "rlop.cli", "run",
                        "--preset", "tiny", "--out", str(tmp_path / "run")], env={**_env(), "TMPDIR": str(scratch)},
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    stages = {p.name for p in run.iterdir() if p.is_dir()}
    from rlop.rlp.variants import VARIANTS

    optional = {s for s in ORDER if s.startswith("overopt-")} | {s for v in VARIANTS.values() for s in v.null_stages}  # snapshots, --null-arm
    assert stages == (set(ORDER) - {"eval"} - optional) | {f"outputs-{m}" for m in ALL_METHODS if m != "bon"}
    assert all((run / s / "stage.json").exists() for s in stages)
    res = json.loads((run / "results.json").read_text())
    assert set(res["methods"]) == set(ALL_METHODS) and all(len(m["scores"]) == 32 for m in res["methods"].values())
    assert "| rlp-spg |" in (run / "report.md").read_text()
    assert r.stdout.count("stage 1/") == 2, "progress lines come from the main process only"  # running + done
    assert not list(scratch.iterdir()), "the other process's scratch folders are removed"
    samples = (run / "samples" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 16 and all(len(json.loads(s)["responses"]) == 4 for s in samples)  # gathered from both processes
