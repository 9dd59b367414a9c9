"""Batched sampling used by every stage (PPO rollouts, best-of-n, ``rlop sample``, evaluation).

Prompts are left-padded, positions come from the attention mask, and every row draws its
random numbers from its own generator seeded by the caller, so a row's output depends on its
prompt and its seed, and on the batch it shares only through rounding: the padded batch shape
changes the last bits of the logits (more so under bf16 autocast), and a draw that falls within
that distance of a bin edge of the inverse CDF picks the neighbouring token. With a near-uniform
tiny model that happened to 1 token in 384 between batches of 32 and 16 in float32. The same
batches repeat exactly, so resumed runs do. Generation stops at EOS (the rest of the row is
padding and ``response_mask`` is 0 there).

The backend is pluggable: :class:`HFBackend` runs any transformers causal LM; a faster
engine (vLLM on GPUs) can implement :class:`Backend` and register in ``BACKENDS``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlop.config import ConfigError
from rlop.models.precision import autocast
from rlop.models.reward_model import position_ids_from_mask

log = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    do_sample: bool = True
    batch_size: int = 16
    # also return each sampled token's log-prob and the entropy under the temperature-scaled, unfiltered
    # distribution (PPO's --rollout-logprobs sampler); a backend that cannot leaves them None
    logprobs: bool = False


@dataclass
class Generation:
    query_ids: torch.Tensor  # [B, Q] left-padded
    query_mask: torch.Tensor
    response_ids: torch.Tensor  # [B, R] right-padded
    response_mask: torch.Tensor  # 1 on generated tokens up to and including EOS
    texts: list[str]
    logprobs: torch.Tensor | None = None  # [B, R] with SamplingConfig.logprobs: log p(token) at temperature; 0 on padding
    entropies: torch.Tensor | None = None  # [B, R] the same distribution's entropy


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Top-k then nucleus filtering (removed entries become -inf); at least one token survives."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        remove = cum - torch.softmax(sorted_logits, dim=-1) >= top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return logits


def draw_uniforms(generators: Sequence[torch.Generator], steps: int, device) -> torch.Tensor:
    """``[rows, steps]``: row i's first ``steps`` draws of its generator, moved to ``device`` once. A row
    draws once per decoding step while it decodes, so column t is what it would draw at step t."""
    return torch.stack([torch.stack([torch.rand((), generator=g) for _ in range(steps)]) for g in generators]).to(device)


def sample_rows(logits: torch.Tensor, cfg: SamplingConfig, generators: Sequence[torch.Generator] = (),
                u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row by inverse-CDF sampling: row i uses uniform ``u[i]`` (given, already on the
    device), else the next draw of ``generators[i]``."""
    if not cfg.do_sample or cfg.temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / cfg.temperature, cfg.top_k, cfg.top_p)
    probs = torch.softmax(logits, dim=-1)
    if u is None:
        u = torch.stack([torch.rand((), generator=g) for g in generators]).to(probs.device)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1)
    return idx.clamp(max=probs.shape[-1] - 1)


def accepts_kwarg(model, name: str) -> bool:
    """Whether ``model.forward`` (the base model's, under a peft wrapper) takes keyword ``name``."""
    fwd = getattr(model, "forward", None)
    base = getattr(model, "get_base_model", None)  # peft wrappers forward **kwargs
    if base is not None:
        fwd = base().forward
    try:
        return name in inspect.signature(fwd).parameters
    except (TypeError, ValueError):
        return False


def cache_kwarg(model) -> str:
    """transformers >= 5.x names the KV cache ``cache``; older versions ``past_key_values``."""
    return "cache" if accepts_kwarg(model, "cache") else "past_key_values"


def cache_of(out):
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else out.past_key_values


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gc = getattr(model, "generation_config", None)
    if gc is not None and gc.eos_token_id is not None:
        ids.update([gc.eos_token_id] if isinstance(gc.eos_token_id, int) else gc.eos_token_id)
    return sorted(i for i in ids if i is not None)


class Backend(Protocol):
    """What every sampling engine provides. ``generate`` returns left-padded prompt ids and
    right-padded response ids with their masks, and with ``cfg.logprobs`` the sampled tokens'
    log-probs if the engine computes them exactly as the training model does (else None: PPO then
    recomputes them with the policy, as it does by default); ``sync_weights`` is called by PPO after each optimisation phase
    so that an engine holding its own copy of the weights samples from the updated policy."""

    def generate(self, prompts: Sequence[str], cfg: SamplingConfig, seeds: Sequence[int]) -> Generation: ...

    def sync_weights(self, model: PreTrainedModel) -> None: ...


def context_length(model: PreTrainedModel) -> int | None:
    """Positions the model can attend to (``max_position_embeddings`` or its aliases), if known."""
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def prompt_budget(model: PreTrainedModel, max_new_tokens: int) -> int | None:
    """Longest prompt that leaves room for ``max_new_tokens`` in the model's context."""
    ctx = context_length(model)
    if ctx is None:
        return None
    if max_new_tokens >= ctx:
        raise ConfigError(f"max_new_tokens = {max_new_tokens} leaves no room for a prompt in the model's context of {ctx} tokens")
    return ctx - max_new_tokens


def encode_prompts(tok: PreTrainedTokenizerBase, prompts: Sequence[str], limit: int | None) -> tuple[dict[str, torch.Tensor], int]:
    """Left-padded ids of ``prompts``, each cut to its last ``limit`` tokens; returns (batch, how many were cut)."""
    ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
    cut = 0
    if limit is not None:
        cut = len({p for p, x in zip(prompts, ids) if len(x) > limit})  # distinct prompts, not samples of one prompt
        ids = [x[-limit:] if len(x) > limit else x for x in ids]
    width = max(len(x) for x in ids)
    pad = tok.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": mask}, cut


class HFBackend:
    """Sampling with any transformers causal LM; prompts longer than the context allows are
    left-truncated (their end, where the instruction and the assistant turn are, is kept), and
    the count is kept in ``truncated`` and reported."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, all_done: Callable[[torch.Tensor], bool] | None = None,
                 prune_finished: bool = True, share_prompts: bool = True, sort_prompts: bool = True, precision: str = "auto",
                 check_every: int | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.precision = precision  # rlop.models.precision: auto | fp32 | bf16
        self.truncated = 0
        # when to stop decoding; under sharding every process must agree (rlop.distributed.all_processes)
        self.all_done = all_done or (lambda done: bool(done.all()))
        # stop decoding rows that have finished (their KV cache rows are dropped); their samples are the same
        # up to the rounding a batch shape causes (see the module docstring)
        self.prune_finished = prune_finished
        # one prompt pass per distinct prompt of a batch (same samples up to that rounding too)
        self.share_prompts = share_prompts
        # rows sorted by prompt length before batching, returned in the caller's order (same samples up to that rounding)
        self.sort_prompts = sort_prompts
        # decoding steps between the checks that need the host (all rows done? prune finished rows?): between them
        # the loop queues device work only. None: every token on a CPU (a check costs nothing there, and an
        # early stop saves passes), every 8 tokens on an accelerator. The samples do not depend on it (pruning
        # aside, whose batch shapes change the rounding only, see the module docstring)
        self.check_every = check_every

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Nothing to copy: this backend samples with the training model itself."""

    @torch.no_grad()
    def _generate_batch(self, prompts: Sequence[str], cfg: SamplingConfig, seeds: Sequence[int]) -> Generation:
        with autocast(next(self.model.parameters()).device, self.precision):
            return self._sample(prompts, cfg, seeds)

    def _sample(self, prompts: Sequence[str], cfg: SamplingConfig, seeds: Sequence[int]) -> Generation:
        model, tok = self.model, self.tokenizer
        device = next(model.parameters()).device
        limit = prompt_budget(model, cfg.max_new_tokens)
        # the samples of one instruction sit side by side in a batch (best-of-n, step 4, evaluation): the prompt pass
        # runs once per distinct prompt and its KV cache rows are repeated for each sample
        distinct = list(dict.fromkeys(prompts))
        share = self.share_prompts and len(distinct) < len(prompts)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        stop = torch.tensor(eos_ids(model, tok), device=device)
        pad = tok.pad_token_id
        was_training = model.training
        model.eval()
        ids, mask, past, logits, cut = self._prompt_pass(distinct if share else prompts, limit, device)
        if share and not hasattr(past, "batch_select_indices"):  # a cache type that cannot repeat rows: one pass per row
            share = False
            ids, mask, past, logits, cut = self._prompt_pass(prompts, limit, device)
        if cut:
            self.truncated += cut
            log.warning("left-truncated %d prompt(s) longer than %d tokens (the model's context minus max_new_tokens = %d); "
                        "%d so far", cut, limit, cfg.max_new_tokens, self.truncated)
        if share:
            where = {p: i for i, p in enumerate(distinct)}
            rep = torch.tensor([where[p] for p in prompts], device=device)
            past.batch_select_indices(rep)
            ids, mask, logits = ids[rep], mask[rep], logits[rep]
        pos = position_ids_from_mask(mask)[:, -1:]
        full_mask = mask
        resp = torch.full((len(prompts), cfg.max_new_tokens), pad, dtype=torch.long, device=device)
        rmask = torch.zeros_like(resp)
        lps = torch.zeros(resp.shape, device=device) if cfg.logprobs else None
        ents = torch.zeros(resp.shape, device=device) if cfg.logprobs else None
        rows = torch.arange(len(prompts), device=device)  # the output row each row of the (pruned) batch fills
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        sampled = cfg.do_sample and cfg.temperature != 0
        uniforms = draw_uniforms(gens, cfg.max_new_tokens, device) if sampled else None
        last = cfg.max_new_tokens - 1
        every = self.check_every or (1 if device.type == "cpu" else 8)
        for t in range(cfg.max_new_tokens):
            nxt = sample_rows(logits, cfg, u=None if uniforms is None else uniforms[rows, t])
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            resp[rows, t], rmask[rows, t] = nxt, (~done).long()
            if lps is not None:
                logp = torch.log_softmax(logits.float() / cfg.temperature, dim=-1)
                live = (~done).float()
                lps[rows, t] = logp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1) * live
                ents[rows, t] = -(logp.exp() * logp).sum(-1) * live
            done = done | torch.isin(nxt, stop)
            if t == last:  # nothing reads the logits of a further pass
                break
            check = (t + 1) % every == 0
            if check and self.all_done(done):
                break
            full_mask = torch.cat([full_mask, torch.ones_like(nxt).unsqueeze(1)], dim=1)
            pos = pos + 1
            keep = self._rows_to_keep(done, past) if check else None
            if keep is not None:
                past.batch_select_indices(keep)
                rows, done, nxt, full_mask, pos = rows[keep], done[keep], nxt[keep], full_mask[keep], pos[keep]
            out = model(input_ids=nxt.unsqueeze(1), attention_mask=full_mask, position_ids=pos, use_cache=True, **{cache_kwarg(model): past})
            past, logits = cache_of(out), out.logits[:, -1]
        model.train(was_training)
        live = rmask.any(0).nonzero()  # the steps some row decoded (a row's EOS included); later checks leave padding only
        steps = int(live[-1]) + 1 if len(live) else 0
        resp, rmask = resp[:, :steps], rmask[:, :steps]
        texts = [tok.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(resp, rmask)]
        if lps is not None:
            lps, ents = lps[:, :steps], ents[:, :steps]
        return Generation(ids, mask, resp, rmask, texts, lps, ents)

    def _prompt_pass(self, prompts: Sequence[str], limit: int, device) -> tuple:
        """Encode and run the prompts: (ids, mask, KV cache, last-position logits, number left-truncated).
        Only the last position's logits are needed, so the LM head skips the others where the model allows."""
        enc, cut = encode_prompts(self.tokenizer, prompts, limit)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        keep_last = {"logits_to_keep": 1} if accepts_kwarg(self.model, "logits_to_keep") else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True, **keep_last)
        return ids, mask, cache_of(out), out.logits[:, -1], cut

    def _rows_to_keep(self, done: torch.Tensor, past) -> torch.Tensor | None:
        """The rows worth decoding further, once a quarter of the batch has finished (each pruning
        copies the KV cache); None to keep them all. A process whose rows have all finished keeps
        one while others still decode: under sharding every process runs the same forward passes."""
        finished = int(done.sum())
        if not self.prune_finished or finished * 4 < len(done) or not hasattr(past, "batch_select_indices"):
            return None
        keep = (~done).nonzero().squeeze(1)
        if not len(keep):
            keep = keep.new_zeros(1)
        return None if len(keep) == len(done) else keep

    def generate(self, prompts: Sequence[str], cfg: SamplingConfig, seeds: Sequence[int]) -> Generation:
        order = list(range(len(prompts)))
        if self.sort_prompts and len(prompts) > cfg.batch_size:  # batches of similar prompt lengths: less left padding
            lengths = [len(x) for x in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
            order.sort(key=lambda i: lengths[i])  # stable: the samples of one prompt stay side by side
        rows, row_seeds = [prompts[i] for i in order], [seeds[i] for i in order]
        parts = [self._generate_batch(rows[i : i + cfg.batch_size], cfg, row_seeds[i : i + cfg.batch_size]) for i in range(0, len(rows), cfg.batch_size)]
        return reorder_generation(concat_generations(parts, self.tokenizer.pad_token_id), order)


def _pad_to(x: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
    if x.shape[1] == width:
        return x
    fill = torch.full((x.shape[0], width - x.shape[1]), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x] if left else [x, fill], dim=1)


def concat_generations(parts: list[Generation], pad: int) -> Generation:
    if len(parts) == 1:
        return parts[0]
    q = max(p.query_ids.shape[1] for p in parts)
    r = max(p.response_ids.shape[1] for p in parts)
    return Generation(
        torch.cat([_pad_to(p.query_ids, q, pad, True) for p in parts]),
        torch.cat([_pad_to(p.query_mask, q, 0, True) for p in parts]),
        torch.cat([_pad_to(p.response_ids, r, pad, False) for p in parts]),
        torch.cat([_pad_to(p.response_mask, r, 0, False) for p in parts]),
        [t for p in parts for t in p.texts],
        *(None if any(getattr(p, k) is None for p in parts) else torch.cat([_pad_to(getattr(p, k), r, 0, False) for p in parts])
          for k in ("logprobs", "entropies")),
    )


def reorder_generation(g: Generation, order: list[int]) -> Generation:
    """``g`` holds the rows ``order[0], order[1], ...``; put them back in the caller's order."""
    if order == sorted(order):
        return g
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))
    return Generation(*(None if t is None else t[back.to(t.device)] for t in (g.query_ids, g.query_mask, g.response_ids, g.response_mask)),
                      [g.texts[i] for i in back.tolist()],
                      *(None if t is None else t[back.to(t.device)] for t in (g.logprobs, g.entropies)))


BACKENDS = {"hf": HFBackend}


def make_backend(model, tokenizer, name: str = "hf", **kwargs) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown generation backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[name](model, tokenizer, **kwargs)
