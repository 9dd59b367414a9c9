"""Pairwise annotators for evaluation: ``prefer(example, output_1, output_2) -> 1 | 2 | 0 | None``.

1: output_1 better; 2: output_2 better; 0: tie (identical outputs only); None: no usable
verdict (dropped from the win-rate, as AlpacaFarm does).

* ``gold``: the sandbox gold annotator (needs sandbox tasks);
* ``reward``: a reward model as annotator (higher score wins);
* ``api``: any OpenAI-compatible chat-completions endpoint. Base URL from ``RLOP_API_BASE``
  (or ``OPENAI_BASE_URL``), key from ``RLOP_API_KEY`` (or ``OPENAI_API_KEY``), model from
  ``RLOP_API_MODEL``. The pair is shown in a seeded random order and un-swapped after
  parsing; HTTP errors and timeouts are retried with exponential backoff; answers that name
  neither output are counted in ``unparseable`` and dropped.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from rlop.errors import UserError
from rlop.utils import derive_seed

PAIRWISE_PROMPT = """You are comparing two responses to the same instruction. Pick the response that follows the instruction better and is more helpful and correct.

# Instruction
{instruction}

# Output (a)
{a}

# Output (b)
{b}

Answer with exactly "Output (a)" or "Output (b)"."""

VERDICT_RE = re.compile(r"output\s*\(?\s*([ab])\s*\)?", re.I)


class RewardAnnotator:
    """A reward model as judge: the output with the higher score wins. Scores are kept per
    (instruction, input, output), so a reference compared with many outputs is scored once."""

    name = "reward"

    def __init__(self, path: str, precision: str = "auto"):
        from rlop.reward_functions import RewardModelReward

        self.reward = RewardModelReward(path, precision=precision)
        self._scores: dict[tuple[str, str, str], float] = {}

    def _score(self, keys: list[tuple[str, str, str]], progress: str | None = None) -> None:
        todo = [k for k in dict.fromkeys(keys) if k not in self._scores]
        if todo:
            instructions, inputs, outputs = zip(*todo)
            self._scores.update(zip(todo, self.reward.scorer.score(instructions, inputs, outputs, progress=progress)))

    def prefetch(self, items) -> None:
        """Score every distinct output of ``items`` ((example, output_1, output_2) triples) in
        batches, with a progress bar; :meth:`prefer` then reads the scores."""
        self._score([(ex.instruction, ex.input, o) for ex, o1, o2 in items if o1 != o2 for o in (o1, o2)], progress="reward judge")

    def prefer(self, ex, o1, o2):
        if o1 == o2:
            return 0
        a, b = (ex.instruction, ex.input, o1), (ex.instruction, ex.input, o2)
        self._score([a, b])
        return 1 if self._scores[a] >= self._scores[b] else 2


class AnnotatorError(UserError, RuntimeError):
    """An annotator endpoint that cannot work as configured (exit code 2)."""


HARD_STATUS = {400: "bad request", 401: "unauthorized: check RLOP_API_KEY", 403: "forbidden: check RLOP_API_KEY and its permissions",
               404: "not found: check RLOP_API_BASE (it should end in /v1) and RLOP_API_MODEL", 405: "method not allowed: check RLOP_API_BASE",
               422: "request rejected: check RLOP_API_MODEL"}


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class _Transient(Exception):
    def __init__(self, what: str, wait: float | None = None):
        super().__init__(what)
        self.wait = wait


class APIAnnotator:
    """Pairwise verdicts from an OpenAI-compatible chat-completions endpoint.

    A first request that fails hard (connection refused, unknown host, HTTP 400/401/403/404,
    a reply that is not a chat completion) stops with :class:`AnnotatorError`: nothing would
    work after it. Rate limits (429), server errors (5xx), timeouts and dropped connections
    are retried with exponential backoff, honouring ``Retry-After``; each retry is reported
    on stderr and counted in ``stats``. An item that still fails is dropped (no verdict), and
    ``max_consecutive_failures`` dropped items in a row stop the command.
    """

    name = "api"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None,
                 retries: int = 4, backoff: float = 1.0, timeout: float = 60.0, seed: int = 0,
                 max_wait: float = 60.0, max_consecutive_failures: int = 3, log=None, randomize_order: bool = True,
                 cache: str | None = "auto", price_input: float = 0.0, price_output: float = 0.0, concurrency: int = 1,
                 pool: list[dict[str, str]] | None = None, label_flip: float = 0.0):
        """``randomize_order``: show each pair in a seeded random order (evaluation); False shows
        output_1 first, as ``rlop agreement`` needs to measure position bias. ``cache``: the
        annotation cache file ("auto": the default one; "" or None: no cache). ``price_input`` and
        ``price_output``: US dollars per million prompt and completion tokens, for the cost estimate.
        ``pool``: annotator configurations (``model``, optional ``prompt`` template with
        ``{instruction}``, ``{a}``, ``{b}``), one picked per pair by a seeded hash, as AlpacaFarm's
        simulated pool; ``label_flip``: probability p that a verdict is replaced by a coin flip
        (so p/2 of the verdicts are wrong on purpose, AlpacaFarm's noise)."""
        from rlop.evaluation.annotation_cache import AnnotationCache, default_path

        self.randomize_order = randomize_order
        self.cache = AnnotationCache(default_path() if cache == "auto" else cache) if cache else None
        self.prices = (price_input, price_output)
        self.concurrency = concurrency  # requests in flight at once in prefetch()
        self._memo: dict[tuple[str, str], str | None] = {}  # (model, prompt) -> reply, filled by prefetch()
        self._lock = threading.Lock()
        self._stopped = False
        self.base_url = (base_url or os.environ.get("RLOP_API_BASE") or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise AnnotatorError("the api annotator needs a base URL: set RLOP_API_BASE (an OpenAI-compatible endpoint, e.g. http://host:8000/v1)")
        if not self.base_url.startswith(("http://", "https://")):
            raise AnnotatorError(f"RLOP_API_BASE must start with http:// or https://, got {self.base_url!r}")
        self.api_key = api_key or os.environ.get("RLOP_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        self.model = model or os.environ.get("RLOP_API_MODEL", "gpt-4o-mini")
        self.pool = [{"model": m.get("model") or self.model, "prompt": m.get("prompt") or PAIRWISE_PROMPT} for m in (pool or [{}])]
        self.label_flip = label_flip
        self.retries, self.backoff, self.timeout, self.seed = retries, backoff, timeout, seed
        self.max_wait, self.max_consecutive_failures = max_wait, max_consecutive_failures
        self.log = log or (lambda msg: print(f"rlop: {msg}", file=sys.stderr, flush=True))
        self.stats = {"requests": 0, "retries": 0, "unparseable": 0, "failed": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "cost_usd": 0.0, "flipped": 0, "per_model": {}}
        self._answered = False
        self._failed_in_a_row = 0

    def _once(self, body: bytes, headers: dict[str, str]) -> str:
        url = f"{self.base_url}/chat/completions"
        try:
            req = urllib.request.Request(url, data=body, headers=headers)
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 429 or e.code == 408 or e.code >= 500:
                raise _Transient(f"HTTP {e.code}", retry_after_seconds(e.headers.get("Retry-After") if e.headers else None)) from None
            raise AnnotatorError(f"api annotator: {url} answered HTTP {e.code} ({HARD_STATUS.get(e.code, e.reason)})") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Transient("timed out") from None
            if not self._answered:
                raise AnnotatorError(f"api annotator: cannot reach {url}: {reason}") from None
            raise _Transient(f"connection failed ({reason})") from None
        except (TimeoutError, socket.timeout):
            raise _Transient("timed out") from None
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            raise _Transient(f"connection dropped ({type(e).__name__})") from None
        try:
            data: Any = json.loads(raw.decode("utf-8"))
            content = data["choices"][0]["message"]["content"]
            if content is not None and not isinstance(content, str):
                raise TypeError("content is not a string")
            usage = data.get("usage") or {}
            with self._lock:
                for k in ("prompt_tokens", "completion_tokens"):
                    if isinstance(usage.get(k), int):
                        self.stats[k] += usage[k]
                self.stats["cost_usd"] = (self.stats["prompt_tokens"] * self.prices[0] + self.stats["completion_tokens"] * self.prices[1]) / 1e6
        except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as e:
            raise AnnotatorError(f"api annotator: {url} did not answer with a chat completion ({type(e).__name__}: {e}); "
                                 "is RLOP_API_BASE an OpenAI-compatible /v1 endpoint?") from None
        return content or ""

    def _post(self, prompt: str, model: str | None = None) -> str | None:
        """The reply text, or None when the item failed after all retries."""
        model = model or self.model
        with self._lock:
            self.stats["per_model"][model] = self.stats["per_model"].get(model, 0) + 1
        request = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 16}
        key = self.cache.key(self.base_url, request) if self.cache else None
        if key and (hit := self.cache.get(key)) is not None:
            self._count("cache_hits")
            return hit
        body = json.dumps(request).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            if self._stopped:  # another request thread gave up: no more requests
                return None
            self._count("requests")
            try:
                text = self._once(body, headers)
            except _Transient as e:
                if attempt == self.retries:
                    self._count("failed")
                    self._failed_in_a_row += 1
                    self.log(f"api annotator: {e} after {self.retries} retries; item dropped ({self.stats['failed']} dropped so far)")
                    if self._failed_in_a_row >= self.max_consecutive_failures:
                        self._stopped = True
                        raise AnnotatorError(f"api annotator: {self._failed_in_a_row} items in a row failed ({e}); stopping") from None
                    return None
                wait = min(self.max_wait, e.wait if e.wait is not None else self.backoff * 2**attempt)
                self._count("retries")
                self.log(f"api annotator: {e}, retry {attempt + 1}/{self.retries} in {wait:.1f} s (retries so far: {self.stats['retries']})")
                time.sleep(wait)
                continue
            except AnnotatorError:
                self._count("failed")
                raise
            self._answered = True
            self._failed_in_a_row = 0
            if key:
                self.cache.put(key, text)
            return text
        return None

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    @staticmethod
    def parse(text: str) -> str | None:
        found = {m.group(1).lower() for m in VERDICT_RE.finditer(text)}
        return found.pop() if len(found) == 1 else None

    def _digest(self, ex, o1, o2, salt: int) -> int:
        """A seeded number for the pair, the same whichever output is shown first."""
        lo, hi = sorted((o1, o2))
        return derive_seed(self.seed, salt, len(ex.instruction), sum(map(ord, ex.instruction + lo + "\x00" + hi)))

    def _presented(self, ex, o1, o2) -> tuple[tuple[str, str], bool]:
        """((model, prompt) that shows the pair, whether it is swapped): the pool member is picked by
        a seeded hash, the order at random (seeded) unless ``randomize_order`` is off."""
        swap = self.randomize_order and random.Random(derive_seed(self.seed, len(ex.instruction), sum(map(ord, ex.instruction + o1 + o2)))).random() < 0.5
        a, b = (o2, o1) if swap else (o1, o2)
        member = self.pool[self._digest(ex, o1, o2, 3) % len(self.pool)]
        instr = ex.instruction + (f"\n\n{ex.input}" if ex.input else "")
        return (member["model"], member["prompt"].format(instruction=instr, a=a, b=b)), swap

    def prefetch(self, items) -> None:
        """Ask for the verdicts of ``items`` ((example, output_1, output_2) triples) with up to
        ``concurrency`` requests in flight; :meth:`prefer` then answers them from memory."""
        todo = list(dict.fromkeys(q for q, _ in (self._presented(ex, o1, o2) for ex, o1, o2 in items if o1 != o2) if q not in self._memo))
        if self.concurrency <= 1 or len(todo) <= 1:
            return  # one at a time is what prefer() does anyway
        from concurrent.futures import ThreadPoolExecutor

        if not self._answered:  # one request alone first: a wrong endpoint, key or model stops before any fan-out
            self._memo[todo[0]] = self._post(todo[0][1], todo[0][0])
            todo = todo[1:]
        with ThreadPoolExecutor(self.concurrency) as pool:
            for q, reply in zip(todo, pool.map(lambda q: self._post(q[1], q[0]), todo)):
                self._memo[q] = reply

    def prefer(self, ex, o1, o2):
        if o1 == o2:
            return 0
        q, swap = self._presented(ex, o1, o2)
        reply = self._memo[q] if q in self._memo else self._post(q[1], q[0])
        if reply is None:
            return None
        verdict = self.parse(reply)
        if verdict is None:
            self._count("unparseable")
            return None
        first_wins = verdict == "a"
        if swap:
            first_wins = not first_wins
        if self.label_flip:
            rng = random.Random(self._digest(ex, o1, o2, 5))
            if rng.random() < 2 * self.label_flip:
                self._count("flipped")
                return rng.choice([1, 2])
        return 1 if first_wins else 2


def make_annotator(name: str, reward_model: str | None = None, precision: str = "auto", **api_options):
    """``gold`` | ``reward`` (needs ``reward_model``; ``precision`` of its forward passes) | ``api``
    (``api_options`` go to :class:`APIAnnotator`)."""
    if name == "gold":
        from rlop.sandbox.gold import GoldAnnotator

        return GoldAnnotator()
    if name == "reward":
        if not reward_model:
            raise AnnotatorError("--annotator reward needs --reward-model DIR")
        return RewardAnnotator(reward_model, precision)
    if name == "api":
        return APIAnnotator(**api_options)
    raise AnnotatorError(f"unknown annotator {name!r}: gold | reward | api")
