from rlop.models.loading import (  # noqa: F401
    BUILTIN_MODELS,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    resolve_model,
)
