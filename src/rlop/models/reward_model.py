"""Reward model forward pieces and text scoring with the model's own tokenizer.

A reward model is a transformers ``*ForSequenceClassification`` with one label. rlop reads
the final hidden state at the last non-pad token (found from the attention mask, so it is
right even where pad == eos, as in SmolLM2) and applies the scalar head to it, which is the
AlpacaFarm convention. Inputs are left-padded and positions come from the mask, so batched
scores equal unbatched ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlop.models.precision import autocast
from rlop.data.formatting import format_prompt
from rlop.models.loading import backbone, load_reward_model, load_tokenizer, score_head


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * pos).argmax(dim=1)


def last_hidden_state(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Final-layer hidden state at each row's last real token: [batch, hidden]."""
    out = backbone(model)(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask), use_cache=False
    )
    h = out.last_hidden_state
    return h[torch.arange(h.shape[0], device=h.device), last_token_index(attention_mask)]


def reward_from_hidden(model: PreTrainedModel, pooled: torch.Tensor) -> torch.Tensor:
    head = score_head(model)
    return head(pooled.to(next(head.parameters()).dtype)).squeeze(-1).float()


def tokenize_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, device=None) -> dict[str, torch.Tensor]:
    """Left-pad; over-long texts lose their beginning (the response end is what is scored)."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    enc = tokenizer(list(texts), add_special_tokens=False, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    if device is not None:
        enc = {k: v.to(device) for k, v in enc.items()}
    return dict(enc)


def rm_texts(tokenizer, instructions: Sequence[str], inputs: Sequence[str], responses: Sequence[str]) -> list[str]:
    return [format_prompt(tokenizer, i, x) + r for i, x, r in zip(instructions, inputs, responses)]


def trained_max_length(path: str | Path, default: int = 512) -> int:
    """The ``max_length`` a reward model saved by rlop was trained with (texts are scored as they were trained)."""
    import json

    try:
        value = json.loads((Path(path) / "rlop_config.json").read_text()).get("max_length")
    except (OSError, ValueError):
        return default
    return value if isinstance(value, int) and value > 0 else default


class RewardModelScorer:
    """Scores (instruction, input, response) text with a saved reward model."""

    def __init__(self, path: str | Path, max_length: int | None = None, batch_size: int = 16, device: str | None = None,
                 model: PreTrainedModel | None = None, tokenizer: PreTrainedTokenizerBase | None = None, dtype: torch.dtype = torch.float32,
                 precision: str = "auto", **model_kwargs):
        """``max_length`` None: the length the model was trained at (its ``rlop_config.json``), else 512.
        ``dtype``: of the stored weights (bf16 halves a frozen scorer's memory); ``precision``: of the forward
        passes (:mod:`rlop.models.precision`); ``model_kwargs`` go to ``from_pretrained``."""
        if max_length is None:
            max_length = trained_max_length(path)
        self.tokenizer = tokenizer or load_tokenizer(str(path))
        self.model = model or load_reward_model(str(path), dtype=dtype, **model_kwargs)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.max_length, self.batch_size, self.precision = max_length, batch_size, precision

    @torch.no_grad()
    def score_texts(self, texts: Sequence[str], progress: str | None = None) -> list[float]:
        """Scores in the order of ``texts``. Batches hold texts of similar token length (less
        padding; a left-padded score does not depend on its batch up to rounding).
        ``progress``: the label of a progress bar over the texts (None: no bar)."""
        from tqdm.auto import tqdm

        lengths = [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if texts else []
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out = [0.0] * len(texts)
        with tqdm(total=len(texts), desc=progress, unit="text", disable=progress is None) as bar:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                enc = tokenize_texts(self.tokenizer, [texts[i] for i in rows], self.max_length, self.device)
                with autocast(self.device, self.precision):
                    pooled = last_hidden_state(self.model, enc["input_ids"], enc["attention_mask"])
                    for i, value in zip(rows, reward_from_hidden(self.model, pooled).tolist()):
                        out[i] = value
                bar.update(len(rows))
        return out

    def score(self, instructions: Sequence[str], inputs: Sequence[str], responses: Sequence[str], progress: str | None = None) -> list[float]:
        return self.score_texts(rm_texts(self.tokenizer, instructions, inputs, responses), progress=progress)
