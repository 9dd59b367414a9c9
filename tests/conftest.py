import json
import random
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def repo_env(**extra: str) -> dict:
    """The environment for a subprocess that runs rlop or a test helper: the repository root first on
    PYTHONPATH (for ``tests.helpers_*``), the caller's PYTHONPATH kept after it (rlop from ``src/`` where
    it is not installed, as in scripts/gpu_check.sh), then ``extra``."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@pytest.fixture(autouse=True)
def annotation_cache(tmp_path, monkeypatch):
    """Each test its own API annotation cache (never the user's)."""
    path = tmp_path / "annotations.sqlite"
    monkeypatch.setenv("RLOP_ANNOTATION_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_tok():
    from rlop.models.loading import load_tokenizer

    return load_tokenizer("tiny")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory):
    """A tiny SFT model trained on the sandbox (shared by several tests)."""
    from rlop.config import build_config
    from rlop.training.sft import SFTConfig, run_sft

    out = tmp_path_factory.mktemp("sft") / "model"
    cfg = build_config(SFTConfig, "tiny", overrides={"max_examples": 256, "epochs": 2, "learning_rate": 3e-3})
    run_sft(cfg, out)
    return out


@pytest.fixture
def precision(monkeypatch):
    """Pin what ``auto`` precision means inside a test: ``precision("fp32")`` ($RLOP_PRECISION, restored afterwards)."""
    from rlop.models import precision as P

    def pin(value: str) -> None:
        if value not in P.CHOICES:
            raise ValueError(f"precision must be one of {', '.join(P.CHOICES)}, not {value!r}")
        monkeypatch.setenv("RLOP_PRECISION", value)

    return pin


def free_port() -> int:
    """A TCP port nothing listens on now (for torchrun / accelerate rendezvous; never a fixed number)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float = 300.0, proc=None) -> None:
    """Poll ``condition()`` until true; fail the test (never carry on) when ``timeout`` passes or ``proc`` ends first."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s and {what} did not happen")
        time.sleep(0.1)


def pytest_collection_modifyitems(items):
    """The ``slow`` end-to-end tests (several tiny runs each) get 30 minutes instead of the suite's 10."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(1800))


def kill_after_checkpoint(cmd: list[str], out: Path, env: dict, step: int = 2) -> list[str]:
    """Start a PPO command, SIGKILL it once a checkpoint of ``step`` or later is on disk, and return the
    metrics lines it had written (the run must not have finished)."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest"
    wait_for(lambda: latest.exists() and int(latest.read_text()) >= step, f"a checkpoint of step {step} or later was written", 300, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "policy").exists(), "the run finished before it was killed"
    return (out / "metrics.jsonl").read_text().splitlines()


def resumed_step(output: str) -> int:
    """The step PPO says it resumed from (``ppo: resumed from step N``); fails the test when it did not resume."""
    import re

    found = re.findall(r"ppo: resumed from step (\d+) \(checkpoint ", output)
    if not found:
        pytest.fail("PPO did not say it resumed from a checkpoint: it restarted\n" + output[-2000:])
    return int(found[-1])


@pytest.fixture(scope="session")
def views_file(tmp_path_factory):
    """Sandbox 'policy samples': 4 solver responses per unlabeled instruction."""
    from rlop.sandbox.world import SandboxConfig, build_world, solve

    rng = random.Random(0)
    tasks = build_world(SandboxConfig(sft=10, preference=10, unlabeled=64, val=10, eval=10))["unlabeled"]
    path = tmp_path_factory.mktemp("views") / "samples.jsonl"
    with open(path, "w") as f:
        for t in tasks:
            f.write(json.dumps({"instruction": t.instruction, "input": t.input, "responses": [solve(t, rng, rng.random() < 0.6) for _ in range(4)], "meta": t.meta()}) + "\n")
    return path
