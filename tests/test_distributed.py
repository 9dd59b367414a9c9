"""Reward training on 2 CPU processes (gloo DDP via torchrun) equals 1 process at the same global batch.

Tolerance: per-step losses within 1e-4 relative and sampled parameters within 1e-5 absolute
(float32 all-reduce changes the summation order, nothing else)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, repo_env

HERE = Path(__file__).parent


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(), reason="torchrun missing")
@pytest.mark.parametrize("rep", ["none", "mib"])
def test_two_processes_match_one(tmp_path, views_file, rep):  # noqa: F811
    # float32 so that only the all-reduce summation order differs between the two runs
    env = repo_env(OMP_NUM_THREADS="1", RLOP_PRECISION="fp32")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run([sys.executable, str(HERE / "dist_reward.py"), str(one), "4", rep, str(views_file)], check=True, env=env, capture_output=True, timeout=900)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    r = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()),
                        str(HERE / "dist_reward.py"), str(two), "2", rep, str(views_file)], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert b["processes"] == 2 and a["processes"] == 1
    assert a["global_batch_size"] == b["global_batch_size"] == 4
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-4)
    assert a["params"] == pytest.approx(b["params"], abs=1e-5)
    assert a["eval_accuracy"] == b["eval_accuracy"]
