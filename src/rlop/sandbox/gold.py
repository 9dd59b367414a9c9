"""Gold scoring of sandbox responses, and the gold and simulated-human annotators.

``gold_score(spec, response)`` is in [0, 1]:

* definite-answer tasks: 0.85 for the right answer (last number; first option named; the
  reversed word present; the sorted items in order), plus up to 0.15 for brevity;
* open tasks: 0.6 x fraction of constraints met, 0.25 for staying on topic, 0.15 for a
  substantive answer (at least 8 words); text that misses the topic keeps only 30% of its
  constraint credit, so off-topic text that happens to meet a format loses.

Empty output scores 0 and repetitive output (fewer than half of its word trigrams
distinct) loses 0.5, so degenerate outputs lose to reasonable answers.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from rlop.utils import derive_seed

NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
# a word: a run of letters or digits in any script (accents included), or one CJK character
# (Chinese and Japanese are written without spaces, and each character is about one word)
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
WORD_RE = re.compile(rf"[{CJK}]|(?:(?![{CJK}])[^\W_])+(?:'(?:(?![{CJK}])[^\W_])+)?")


def _words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def is_repetitive(text: str) -> bool:
    w = [x.lower() for x in _words(text)]
    if len(w) < 12:
        return False
    tri = list(zip(w, w[1:], w[2:]))
    return len(set(tri)) < 0.5 * len(tri)


def _num_equal(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return False


def extract_answer(spec: dict[str, Any], response: str) -> str | None:
    """The answer a response gives to a definite-answer task, or None."""
    t = spec["type"]
    low = response.lower()
    if t == "number":
        nums = NUM_RE.findall(response.replace(",", ""))
        return nums[-1] if nums else None
    if t == "choice":
        pos = [(m.start(), o) for o in spec["options"] for m in re.finditer(rf"(?<![\d.]){re.escape(o)}(?![\d])", response)]
        return min(pos)[1] if pos else None
    if t == "word":
        ws = [w.lower() for w in _words(response)]
        return spec["answer"] if spec["answer"] in ws else (ws[-1] if ws else None)
    if t == "sequence":
        found = [(low.find(it), it) for it in spec["items"] if it in low]
        return ", ".join(it for _, it in sorted(found)) if found else None
    raise ValueError(t)


def answer_correct(spec: dict[str, Any], response: str) -> bool:
    got = extract_answer(spec, response)
    if got is None:
        return False
    if spec["type"] == "number":
        return _num_equal(got, spec["answer"])
    return got == spec["answer"]


def _count_sentences(text: str) -> int:
    return len([s for s in re.split(r"[.!?]+", text) if s.strip()])


def _json_obj(text: str) -> bool:
    t = text.strip()
    t = re.sub(r"^```(?:json)?\s*|\s*```$", "", t, flags=re.I)
    try:
        return isinstance(json.loads(t), dict)
    except ValueError:
        return False


def constraint_met(c: dict[str, Any], text: str) -> bool:
    low = text.lower()
    k = c["type"]
    if k == "max_words":
        return 0 < len(_words(text)) < c["n"]
    if k == "bullets":
        return sum(1 for line in text.splitlines() if re.match(r"\s*-\s+\S", line)) == c["n"]  # the instruction asks for '- '

    if k == "keyword":
        return re.search(rf"\b{re.escape(c['word'])}\b", low) is not None
    if k == "forbidden":
        return re.search(rf"\b{re.escape(c['word'])}\b", low) is None
    if k == "lowercase":
        return any(ch.isalpha() for ch in text) and text == low
    if k == "ending":
        return text.strip().endswith(c["phrase"].strip())
    if k == "title":
        return any(m.group(1).strip() for m in re.finditer(r"<<(.+?)>>", text))  # a non-blank title on one line
    if k == "json":
        return _json_obj(text)
    if k == "sentences":
        return _count_sentences(text) == c["n"]
    raise ValueError(k)


def on_topic(topic: str, text: str) -> bool:
    low = text.lower()
    keys = [w for w in re.findall(r"[a-z]+", topic.lower()) if w not in ("the", "of", "and")]
    return any(k[:-1] in low if len(k) > 4 else k in low for k in keys)


def gold_score(spec: dict[str, Any], response: str) -> float:
    text = response.strip()
    if not text:
        return 0.0
    n_words = len(_words(text))
    if "answer" in spec:
        score = 0.85 * answer_correct(spec, text) + 0.15 * max(0.0, 1.0 - n_words / 60)
    else:
        cons = spec["constraints"]
        frac = sum(constraint_met(c, text) for c in cons) / len(cons)
        topical = on_topic(spec["topic"], text)
        score = 0.6 * frac * (1.0 if topical else 0.3) + 0.25 * topical + 0.15 * (n_words >= 8)
    if is_repetitive(text):
        score -= 0.5
    return max(0.0, min(1.0, score))


def gold_success(spec: dict[str, Any], response: str) -> bool:
    """Task solved: right answer, or every constraint met on topic (no degenerate text)."""
    text = response.strip()
    if not text or is_repetitive(text):
        return False
    if "answer" in spec:
        return answer_correct(spec, text)
    return on_topic(spec["topic"], text) and all(constraint_met(c, text) for c in spec["constraints"])


def check_spec(spec: Any) -> str | None:
    """Why ``spec`` is not a usable sandbox task spec, or None (probes the scorer on sample texts)."""
    if not isinstance(spec, dict):
        return f"expected an object, got {type(spec).__name__}"
    if "answer" not in spec and not isinstance(spec.get("constraints"), list):
        return "needs 'answer' (definite task) or a list of 'constraints' and a 'topic' (open task)"
    if "constraints" in spec and not spec["constraints"]:
        return "'constraints' is empty"
    for probe in ("The answer is 42.", "- a point about the topic\n- another", "x"):
        try:
            gold_score(spec, probe)
            gold_success(spec, probe)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, re.error) as e:
            return f"not a sandbox task spec ({type(e).__name__}: {e})"
    return None


def _digest(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def _spec(task: Any) -> dict[str, Any]:
    """The spec of a task given as a spec dict or as an example with ``meta["spec"]``."""
    if isinstance(task, dict):
        return task
    spec = getattr(task, "meta", {}).get("spec")
    if spec is None:
        raise ValueError("the gold annotator needs sandbox tasks (a 'spec' field)")
    return spec


class GoldAnnotator:
    """The sandbox's one gold object: an annotator and a reward.

    * ``prefer(task, output_1, output_2)``: 1 if output_1 is better, 2 if output_2, 0 only
      for identical outputs (``task`` is a spec or an example carrying ``meta["spec"]``).
      Different outputs with equal gold score are ordered by a hash of their text, which does
      not depend on their order, so swapping the pair always swaps the verdict;
    * ``annotator(examples, responses)``: the gold score in [0, 1] of each response (the
      :class:`rlop.reward_functions.Reward` interface).
    """

    name = "gold"

    def __call__(self, examples, responses) -> list[float]:
        return [gold_score(_spec(e), r) for e, r in zip(examples, responses)]

    def prefer(self, task: Any, output_1: str, output_2: str) -> int:
        spec = _spec(task)
        if output_1 == output_2:
            return 0
        s1, s2 = gold_score(spec, output_1), gold_score(spec, output_2)
        if abs(s1 - s2) > 1e-12:
            return 1 if s1 > s2 else 2
        return 1 if _digest(output_1) < _digest(output_2) else 2


class NoisyAnnotator(GoldAnnotator):
    """Simulated human: the gold verdict, replaced by a fair coin with probability 2 * p_label_flip
    (AlpacaFarm's noise; effective flip rate p_label_flip = 0.25). Seeded per example."""

    name = "noisy"

    def __init__(self, p_label_flip: float = 0.25, seed: int = 0):
        self.p, self.seed = p_label_flip, seed

    def prefer(self, task, output_1, output_2):
        spec = _spec(task)
        v = super().prefer(spec, output_1, output_2)
        if v == 0:
            return 0
        rng = random.Random(derive_seed(self.seed, int(_digest(json.dumps(spec, sort_keys=True) + output_1 + "\x00" + output_2)[:15], 16)))
        if rng.random() < 2 * self.p:
            return rng.choice([1, 2])
        return v
