"""The decode loop without per-token host syncs: uniforms drawn once per call, the all-done check
and the row pruning every ``check_every`` tokens; the samples are those of the per-token loop."""

import pytest
import torch

from rlop.data.formatting import format_prompt
from rlop.data.io import load_instructions
from rlop.models.generation import HFBackend, SamplingConfig, draw_uniforms
from rlop.models.loading import load_causal_lm


@pytest.fixture(scope="module")
def prompts(tiny_tok):
    return [format_prompt(tiny_tok, e.instruction, e.input) for e in load_instructions("sandbox:unlabeled", limit=5)]


def test_uniforms_drawn_at_once_are_the_draws_each_step_would_make():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    u = draw_uniforms(gens, 6, torch.device("cpu"))
    again = [torch.Generator().manual_seed(s) for s in (3, 4)]
    step_by_step = torch.tensor([[float(torch.rand((), generator=g)) for _ in range(6)] for g in again])
    assert u.shape == (2, 6) and torch.equal(u, step_by_step.to(u.dtype))


@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize("batch_size", [3, 8])
def test_checking_every_k_tokens_gives_the_per_token_loops_samples(tiny_tok, prompts, precision, prune, batch_size):
    precision("fp32")
    model = load_causal_lm("tiny")
    model.generation_config.eos_token_id = list(range(0, tiny_tok.vocab_size, 6))  # rows end at varied steps
    cfg = SamplingConfig(max_new_tokens=14, batch_size=batch_size, logprobs=True)
    seeds = list(range(50, 50 + 2 * len(prompts)))
    runs = {k: HFBackend(model, tiny_tok, prune_finished=prune, check_every=k).generate(prompts * 2, cfg, seeds) for k in (1, 3, 8)}
    ref = runs[1]
    lengths = ref.response_mask.sum(1)
    assert len(set(lengths.tolist())) > 2 and int(lengths.min()) < 14  # EOS at several steps, some before the end
    for k, g in runs.items():
        assert g.texts == ref.texts, k
        assert torch.equal(g.response_ids, ref.response_ids) and torch.equal(g.response_mask, ref.response_mask), k
        if prune:  # pruned at other steps: other batch shapes, the same tokens, log-probs equal up to rounding
            torch.testing.assert_close(g.logprobs, ref.logprobs, atol=1e-5, rtol=0)
        else:
            assert torch.equal(g.logprobs, ref.logprobs) and torch.equal(g.entropies, ref.entropies), k


def test_the_host_is_asked_only_every_k_tokens_and_no_pass_is_wasted(tiny_tok, prompts, precision):
    """With check_every 8 and 20 tokens the all-done check runs at steps 8 and 16 only; the last
    step runs no forward pass whose logits nobody reads."""
    precision("fp32")
    model = load_causal_lm("tiny")  # a random model rarely samples EOS: every row runs to the end
    checks, passes = [], []
    model.register_forward_hook(lambda m, args, out: passes.append(out.logits.shape[0]))
    backend = HFBackend(model, tiny_tok, check_every=8, all_done=lambda done: checks.append(int(done.sum())) or bool(done.all()))
    g = backend.generate(prompts[:2], SamplingConfig(max_new_tokens=20, batch_size=2), [1, 2])
    assert len(checks) == 2
    assert len(passes) == 1 + (g.response_ids.shape[1] - 1)  # the prompt pass, then one per token but the last
