import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
