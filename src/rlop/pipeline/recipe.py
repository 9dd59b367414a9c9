"""Where ``rlop run`` takes each role's data from (its recipe) and how it evaluates.

Every source is a JSONL/JSON file, an ``hf:NAME[:SPLIT]`` dataset or a ``sandbox:SPLIT``, in
any format the readers take (Alpaca/AlpacaFarm, TRL's prompt/completion, prompt/chosen/rejected
and conversational records). The sandbox is the default recipe. The sandbox's gold scorer
(the ``gold`` eval annotator, the noisy/gold collection annotators, PPO's gold curve and the
reward-model diagnostics) needs sandbox tasks; with other data those diagnostics are left out
and say so, and evaluation goes to the ``reward`` or ``api`` annotator.

A stage's cache key holds a digest of the content of each local file it reads, so changing a
data file redoes exactly the stages that depend on it."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from rlop.data.io import DataError, InstructionExample


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def source_digest(source: str) -> str:
    """The content digest of a local file; a sandbox split or hub dataset is named by its spec."""
    p = Path(source)
    if source and not source.startswith(("sandbox:", "hf:")) and p.is_file():
        st = p.stat()
        return f"{source}@{_file_digest(str(p.resolve()), st.st_size, st.st_mtime)}"
    return source


def has_tasks(examples: list[InstructionExample]) -> bool:
    """Whether the examples are sandbox tasks (the gold scorer can judge them)."""
    return bool(examples) and all("spec" in e.meta for e in examples)


def require_tasks(examples: list[InstructionExample], source: str, what: str) -> None:
    for n, e in enumerate(examples, start=1):
        if "spec" not in e.meta:
            raise DataError(source, f"record {n}", "spec", f"missing: {what} needs sandbox tasks; give --eval-annotator reward or api "
                            "for other data")


def eval_annotator(run_cfg, e):
    """The ``prefer(example, reference, output)`` of the run's evaluation; ``e``: the run's ``eval:`` EvalConfig."""
    if run_cfg.eval_annotator == "gold":
        from rlop.sandbox.gold import GoldAnnotator

        return GoldAnnotator()
    from rlop.evaluation.annotators import make_annotator

    api = e.api.annotator_options(run_cfg.seed)
    return make_annotator(run_cfg.eval_annotator, run_cfg.eval_reward_model or e.reward_model or None, precision=e.precision,
                          **(api if run_cfg.eval_annotator == "api" else {}))


SOURCE_OPTIONS = ("sft_file", "preference_prompts_file", "preferences_file", "unlabeled_file", "heldout_file", "eval_file", "eval_reward_model")


def check_sources(run_cfg) -> None:
    """Every local file or folder the run reads exists (``sandbox:`` and ``hf:`` sources are checked when read)."""
    for name in SOURCE_OPTIONS:
        value = getattr(run_cfg, name)
        if value and not value.startswith(("sandbox:", "hf:")) and not Path(value).exists():
            raise DataError(value, None, None, f"not found (--{name.replace('_', '-')})")


def count_records(source: str) -> int | None:
    """How many records a local JSONL/JSON file holds (None for ``sandbox:`` and ``hf:`` sources)."""
    if source.startswith(("sandbox:", "hf:")):
        return None
    from rlop.data.io import _records

    return sum(1 for _ in _records(source))


def cut_lines(run_cfg, methods, ppo_max_prompts: int) -> list[str]:
    """One line for each user file the run uses only a part of (a record cap), with the cap option to raise.

    Caps are (file option, cap option, what reads that many records)."""
    c = run_cfg
    caps = [("sft_file", "sft_examples", c.sft_examples, "SFT trains on"),
            ("eval_file", "eval_prompts", c.eval_prompts, "the evaluation uses")]
    if set(methods) != {"sft"}:
        if not c.preferences_file:
            caps.append(("preference_prompts_file", "preference_prompts", c.preference_prompts, "step 1 labels"))
        if ppo_max_prompts:
            caps.append(("unlabeled_file", "ppo: max_prompts", ppo_max_prompts, "PPO draws its prompts from"))
        if set(methods) - {"sft", "bon", "ppo"}:
            caps.append(("unlabeled_file", "unlabeled_prompts", c.unlabeled_prompts, "step 4 samples"))
    lines = []
    for option, cap_option, cap, what in caps:
        n = count_records(getattr(c, option))
        if n is not None and n > cap:
            lines.append(f"{option} {getattr(c, option)}: {what} the first {cap} of its {n} records (raise {cap_option} to use more)")
    return lines
