"""Options of the OpenAI-compatible API annotator, nested as ``api`` in every config that can
use it (``eval``, ``collect``, ``agreement``); the fields keep their flat names on the command
line (``--api-base``) and in YAML (``eval: {api_base: ...}``). The key is never an option: it
is read from ``RLOP_API_KEY`` only."""

from __future__ import annotations

from dataclasses import dataclass
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
    api_price_input: float = opt(0.0, "US dollars per million prompt tokens, for the cost estimate", ge=0)
    api_price_output: float = opt(0.0, "US dollars per million completion tokens, for the cost estimate", ge=0)

    def annotator_options(self, seed: int = 0, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`rlop.evaluation.annotators.APIAnnotator`."""
        return dict(base_url=self.api_base or None, model=self.api_model or None, retries=self.api_retries, backoff=self.api_backoff,
                    timeout=self.api_timeout, seed=seed, cache=None if self.api_cache == "none" else self.api_cache,
                    price_input=self.api_price_input, price_output=self.api_price_output, concurrency=self.api_concurrency, **extra)
