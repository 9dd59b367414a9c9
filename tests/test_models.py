"""Model loading, padding and reward scoring."""

import torch

from rlop.data import format_prompt
from rlop.models.generation import HFBackend, SamplingConfig
from rlop.models.loading import load_causal_lm, load_reward_model
from rlop.models.reward_model import last_hidden_state, reward_from_hidden, tokenize_texts


def test_tiny_model_uses_smollm2_tokenizer_pad_equals_eos(tiny_tok):
    assert tiny_tok.pad_token_id == tiny_tok.eos_token_id  # the case masks must handle
    m = load_causal_lm("tiny")
    assert m.config.vocab_size == len(tiny_tok)


def test_reward_batched_equals_unbatched(tiny_tok):
    rm = load_reward_model("tiny").eval()
    texts = [format_prompt(tiny_tok, "Hi", "") + "Hello there, how are you today my friend?", format_prompt(tiny_tok, "Q", "") + "A"]
    with torch.no_grad():
        b = tokenize_texts(tiny_tok, texts, 256)
        batched = reward_from_hidden(rm, last_hidden_state(rm, b["input_ids"], b["attention_mask"]))
        single = [reward_from_hidden(rm, last_hidden_state(rm, **tokenize_texts(tiny_tok, [t], 256))).item() for t in texts]
    assert b["attention_mask"][1].sum() < b["attention_mask"][0].sum()  # row 1 was padded
    assert torch.allclose(batched, torch.tensor(single), atol=1e-5)


def test_generation_batched_equals_unbatched(tiny_tok, precision):
    precision("fp32")  # exact in float32; bf16 rounding depends on the padded batch shape
    m = load_causal_lm("tiny")
    prompts = [format_prompt(tiny_tok, "Write a long poem about the sea and the sky", ""), format_prompt(tiny_tok, "hi", "")]
    be = HFBackend(m, tiny_tok)
    for cfg in (SamplingConfig(max_new_tokens=10, batch_size=2), SamplingConfig(max_new_tokens=10, do_sample=False, batch_size=2)):
        both = be.generate(prompts, cfg, [11, 22])
        one = [be.generate([p], cfg, [s]).texts[0] for p, s in zip(prompts, [11, 22])]
        assert both.texts == one
    again = be.generate(prompts, SamplingConfig(max_new_tokens=10), [11, 22])
    other_seed = be.generate(prompts, SamplingConfig(max_new_tokens=10), [12, 23])
    assert again.texts == be.generate(prompts, SamplingConfig(max_new_tokens=10), [11, 22]).texts
    assert again.texts != other_seed.texts
