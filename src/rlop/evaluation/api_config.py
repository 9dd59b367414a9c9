"""Options of the OpenAI-compatible API annotator, nested as ``api`` in every config that can
use it (``eval``, ``collect``, ``agreement``); the fields keep their flat names on the command
line (``--api-base``) and in YAML (``eval: {api_base: ...}``). The key is never an option: it
is read from ``RLOP_API_KEY`` only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlop.config import StageConfig, opt


@dataclass
class APIConfig(StageConfig):
    api_base: str = opt("", "OpenAI-compatible base URL ending in /v1 (default: $RLOP_API_BASE); the key is read from $RLOP_API_KEY only")
    api_model: str = opt("", "model name sent to the endpoint (default: $RLOP_API_MODEL or gpt-4o-mini)")
    api_retries: int = opt(4, "retries of a rate-limited (429), failing (5xx) or timed-out request", ge=0)
    api_backoff: float = opt(1.0, "first retry wait in seconds, doubled each retry (Retry-After wins when sent)", ge=0)
    api_timeout: float = opt(60.0, "seconds to wait for one reply", gt=0)
    api_concurrency: int = opt(4, "requests in flight at once", ge=1)
    api_cache: str = opt("auto", "annotation cache file, so a rerun never pays twice (auto: $RLOP_ANNOTATION_CACHE or "
                                 "$RLOP_CACHE/annotations.sqlite; none: off)")
    api_pool: str = opt("", "a JSON/YAML list of annotator configurations ({model, prompt}; prompt: a template with {instruction}, {a}, {b}), "
                            "one picked per pair by a seeded hash (AlpacaFarm's simulated pool); empty: one annotator")
    api_label_flip: float = opt(0.0, "probability that a verdict is replaced by a coin flip (AlpacaFarm's noisy pool: 0.25)", ge=0, le=0.5)
    api_price_input: float = opt(0.0, "US dollars per million prompt tokens, for the cost estimate", ge=0)
    api_price_output: float = opt(0.0, "US dollars per million completion tokens, for the cost estimate", ge=0)

    def annotator_options(self, seed: int = 0, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`rlop.evaluation.annotators.APIAnnotator`."""
        return dict(base_url=self.api_base or None, model=self.api_model or None, retries=self.api_retries, backoff=self.api_backoff,
                    timeout=self.api_timeout, seed=seed, cache=None if self.api_cache == "none" else self.api_cache,
                    price_input=self.api_price_input, price_output=self.api_price_output, concurrency=self.api_concurrency,
                    pool=load_pool(self.api_pool) if self.api_pool else None, label_flip=self.api_label_flip, **extra)


def load_pool(path: str) -> list[dict[str, str]]:
    """The annotator pool file, checked: a non-empty list of {model, prompt} with the template's three fields."""
    import yaml

    from rlop.config import ConfigError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"--api-pool {path}: cannot read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"--api-pool {path}: expected a non-empty list of annotator configurations")
    for i, m in enumerate(data, start=1):
        if not isinstance(m, dict) or set(m) - {"model", "prompt"} or not isinstance(m.get("model", ""), str):
            raise ConfigError(f"--api-pool {path}: entry {i}: expected {{model: NAME, prompt: TEMPLATE}} (both optional, nothing else)")
        prompt = m.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or any(f not in prompt for f in ("{instruction}", "{a}", "{b}"))):
            raise ConfigError(f"--api-pool {path}: entry {i}: the prompt template needs {{instruction}}, {{a}} and {{b}}")
        if prompt is not None:
            try:
                prompt.format(instruction="", a="", b="")
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(f"--api-pool {path}: entry {i}: the prompt template has a stray brace field ({e})") from None
    return data
