"""The generation backend interface (rlop.models.generation.Backend), checked on the
transformers backend and on a fake engine, and how PPO uses it: seeds per prompt, masks
up to and including EOS, padding after it, and ``sync_weights`` after every optimisation phase."""

from dataclasses import dataclass, field

import pytest
import torch

from rlop.config import build_config
from rlop.data.formatting import format_prompt
from rlop.data.io import load_instructions
from rlop.models.generation import Generation, HFBackend, SamplingConfig, encode_prompts
from rlop.models.loading import load_causal_lm, load_tokenizer
from rlop.reward_functions import CallableReward
from rlop.training.ppo import PPOConfig, PPOTrainer
from rlop.utils import derive_seed
from tests import helpers_rewards


@dataclass
class FakeEngine:
    """An engine with its own weights: token ids drawn from the seed, EOS at a seed-chosen step."""

    tokenizer: object
    eos: int
    seeds_seen: list = field(default_factory=list)
    syncs: list = field(default_factory=list)

    def generate(self, prompts, cfg: SamplingConfig, seeds) -> Generation:
        self.seeds_seen.extend(seeds)
        enc, _ = encode_prompts(self.tokenizer, prompts, None)
        R = cfg.max_new_tokens
        ids = torch.full((len(prompts), R), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seeds):
            g = torch.Generator().manual_seed(int(s))
            n = int(torch.randint(1, R + 1, (), generator=g))  # length including EOS
            ids[row, :n] = torch.randint(100, 1000, (n,), generator=g)
            ids[row, n - 1] = self.eos if n < R else ids[row, n - 1]
            mask[row, :n] = 1
        texts = [self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(ids, mask)]
        return Generation(enc["input_ids"], enc["attention_mask"], ids, mask, texts)

    def sync_weights(self, model) -> None:
        self.syncs.append(sum(float(p.detach().double().sum()) for p in model.parameters()))


def check_contract(backend, tok, prompts, eos: set[int]):
    cfg = SamplingConfig(max_new_tokens=10, batch_size=3)
    g = backend.generate(prompts, cfg, list(range(len(prompts))))
    B = len(prompts)
    assert g.query_ids.shape == g.query_mask.shape and g.query_ids.shape[0] == B
    assert g.response_ids.shape == g.response_mask.shape and g.response_ids.shape[0] == B and g.response_ids.shape[1] <= 10
    assert len(g.texts) == B
    for q, qm in zip(g.query_ids, g.query_mask):  # left padding
        n = int(qm.sum())
        assert qm[-n:].all() and not qm[:-n].any() and (q[:-n] == tok.pad_token_id).all()
    for r, m in zip(g.response_ids, g.response_mask):  # mask is a prefix; it ends at the first EOS or at max_new_tokens
        n = int(m.sum())
        assert n >= 1 and m[:n].all() and not m[n:].any() and (r[n:] == tok.pad_token_id).all()
        hits = [i for i in range(n) if int(r[i]) in eos]
        assert hits in ([], [n - 1]), "tokens after EOS must be masked"
        if n < g.response_ids.shape[1]:
            assert hits == [n - 1], "a response shorter than the batch ends at EOS"
    again = backend.generate(prompts, cfg, list(range(len(prompts))))
    assert again.texts == g.texts and torch.equal(again.response_ids, g.response_ids)  # same seeds, same samples
    return g


@pytest.fixture(scope="module")
def prompts(tiny_tok):
    return [format_prompt(tiny_tok, e.instruction, e.input) for e in load_instructions("sandbox:unlabeled", limit=7)]


def test_hf_backend_meets_the_contract(tiny_tok, prompts, precision):
    precision("fp32")
    model = load_causal_lm("tiny")
    model.generation_config.eos_token_id = list(range(0, tiny_tok.vocab_size, 7))  # 1 in 7 tokens ends a row: EOS at varied steps
    g = check_contract(HFBackend(model, tiny_tok), tiny_tok, prompts, set(model.generation_config.eos_token_id))
    lengths = g.response_mask.sum(1).tolist()
    assert len(set(lengths)) > 1, lengths


def test_prompt_pass_keeps_only_the_last_logits_and_samples_the_same(tiny_tok, prompts, precision, monkeypatch):
    """The prompt pass runs the LM head on the last position only (a [B, 1, V] logits tensor, not
    [B, Q, V]); the samples are those of a full prompt pass."""
    precision("fp32")
    from rlop.models import generation

    model = load_causal_lm("tiny")
    cfg = SamplingConfig(max_new_tokens=6, batch_size=4)
    widths = []
    model.register_forward_hook(lambda m, args, out: widths.append(out.logits.shape[1]))
    kept = HFBackend(model, tiny_tok).generate(prompts, cfg, list(range(len(prompts))))
    assert widths[0] == 1 and len(widths) > 1  # the prompt pass, then one-token steps
    real = generation.accepts_kwarg
    monkeypatch.setattr(generation, "accepts_kwarg", lambda m, name: name != "logits_to_keep" and real(m, name))
    widths.clear()
    full = HFBackend(model, tiny_tok).generate(prompts, cfg, list(range(len(prompts))))
    assert widths[0] > 1
    assert torch.equal(kept.response_ids, full.response_ids)


def test_finished_rows_stop_decoding_and_the_samples_stay_the_same(tiny_tok, prompts, precision):
    """Rows that reached EOS leave the batch (and the KV cache): the decode steps run on fewer
    rows, and every row's sample is the one the unpruned batch gives (float32)."""
    precision("fp32")
    model = load_causal_lm("tiny")
    model.generation_config.eos_token_id = list(range(0, tiny_tok.vocab_size, 5))  # rows end at varied steps
    cfg = SamplingConfig(max_new_tokens=12, batch_size=8)
    rows = []
    model.register_forward_hook(lambda m, args, out: rows.append(out.logits.shape[0]))
    seeds = list(range(100, 100 + 2 * len(prompts)))
    pruned = HFBackend(model, tiny_tok).generate(prompts * 2, cfg, seeds)
    pruned_rows, rows[:] = sum(rows[1:]), []
    full = HFBackend(model, tiny_tok, prune_finished=False).generate(prompts * 2, cfg, seeds)
    assert pruned.texts == full.texts
    assert torch.equal(pruned.response_ids, full.response_ids) and torch.equal(pruned.response_mask, full.response_mask)
    assert pruned_rows < sum(rows[1:]), (pruned_rows, rows)


def test_sampler_logprobs_are_the_policy_log_probs_of_the_sampled_tokens(tiny_tok, prompts, precision):
    """With ``logprobs`` the backend returns each sampled token's log-prob and entropy at the
    sampling temperature: those a full forward pass of the model gives (PPO's recompute), with
    finished rows pruned from the batch and split over several generation batches; 0 on padding."""
    from rlop.training.actor_critic import response_logprobs

    precision("fp32")
    model = load_causal_lm("tiny")
    model.generation_config.eos_token_id = list(range(0, tiny_tok.vocab_size, 5))  # rows end at varied steps
    cfg = SamplingConfig(max_new_tokens=12, temperature=0.7, top_p=0.9, batch_size=5, logprobs=True)
    g = HFBackend(model, tiny_tok).generate(prompts * 2, cfg, list(range(2 * len(prompts))))
    lp, ent = response_logprobs(model, g.query_ids, g.query_mask, g.response_ids, g.response_mask, cfg.temperature, with_entropy=True)
    mask = g.response_mask.bool()
    assert len(set(g.response_mask.sum(1).tolist())) > 1
    assert torch.allclose(g.logprobs[mask], lp[mask], atol=1e-4) and torch.allclose(g.entropies[mask], ent[mask], atol=1e-4)
    assert not g.logprobs[~mask].any() and not g.entropies[~mask].any()
    assert HFBackend(model, tiny_tok).generate(prompts, SamplingConfig(max_new_tokens=4), list(range(len(prompts)))).logprobs is None


def test_rows_sorted_by_prompt_length_come_back_in_order_with_less_padding(tiny_tok, prompts, precision):
    """Batches hold prompts of similar length (less left padding in the prompt pass); the rows
    come back in the caller's order with the samples the unsorted batches give (float32)."""
    precision("fp32")
    model = load_causal_lm("tiny")
    cfg = SamplingConfig(max_new_tokens=5, batch_size=4, logprobs=True)
    rows = sorted(prompts, key=lambda p: (len(p) % 3, p)) * 2  # lengths mixed across the batches
    padded = []
    model.register_forward_hook(lambda m, args, kw, out: padded.append(kw["input_ids"].numel()) if kw["input_ids"].shape[1] > 1 else None,
                                with_kwargs=True)
    seeds = list(range(7, 7 + len(rows)))
    by_length = HFBackend(model, tiny_tok).generate(rows, cfg, seeds)
    sorted_tokens, padded[:] = sum(padded), []
    unsorted = HFBackend(model, tiny_tok, sort_prompts=False).generate(rows, cfg, seeds)
    assert sorted_tokens < sum(padded), (sorted_tokens, sum(padded))
    assert by_length.texts == unsorted.texts
    mask = unsorted.response_mask.bool()
    assert torch.equal(by_length.response_ids, unsorted.response_ids) and torch.equal(by_length.response_mask, unsorted.response_mask)
    assert torch.allclose(by_length.logprobs[mask], unsorted.logprobs[mask], atol=1e-5)
    for q, qm, text in zip(by_length.query_ids, by_length.query_mask, rows):  # each row's own prompt, in order
        assert tiny_tok.decode(q[qm.bool()]) == text


def test_the_samples_of_one_prompt_share_its_prompt_pass(tiny_tok, prompts, precision):
    """A batch holding several samples of each prompt runs the prompt pass once per distinct
    prompt; the samples are those of one pass per row (float32)."""
    precision("fp32")
    model = load_causal_lm("tiny")
    model.generation_config.eos_token_id = list(range(0, tiny_tok.vocab_size, 5))
    first = []
    model.register_forward_hook(lambda m, args, out: first.append(out.logits.shape[0]))
    rows = [p for p in prompts[:3] for _ in range(4)]  # as best-of-n and step 4 lay them out
    cfg = SamplingConfig(max_new_tokens=10, batch_size=12)
    shared = HFBackend(model, tiny_tok).generate(rows, cfg, list(range(12)))
    assert first[0] == 3
    first.clear()
    alone = HFBackend(model, tiny_tok, share_prompts=False).generate(rows, cfg, list(range(12)))
    assert first[0] == 12
    assert shared.texts == alone.texts and torch.equal(shared.query_ids, alone.query_ids)
    assert torch.equal(shared.response_ids, alone.response_ids) and torch.equal(shared.response_mask, alone.response_mask)
    assert len(set(shared.texts)) > 3  # the samples of a prompt still differ


def test_a_process_whose_rows_finished_keeps_stepping_while_others_decode(tiny_tok, prompts, precision):
    """Under sharding every process must run the same forward passes: with all local rows done
    but ``all_done`` still false, decoding goes on with one (masked) row."""
    precision("fp32")
    model = load_causal_lm("tiny")
    model.generation_config.eos_token_id = list(range(0, tiny_tok.vocab_size, 2))  # most rows end at once
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(out.logits.shape[0]))
    g = HFBackend(model, tiny_tok, all_done=lambda done: False).generate(prompts[:4], SamplingConfig(max_new_tokens=9, batch_size=4), [1, 2, 3, 4])
    # the prompt pass and a forward after each of the first 8 draws (none after the last, whose
    # logits nothing reads), as many as the other processes run, the last on one row
    assert len(calls) == 9 and calls[0] == 4 and calls[-1] == 1, calls
    # columns after every row's end hold only padding and are trimmed (PPO pads across processes)
    assert g.response_ids.shape[1] == int(g.response_mask.sum(1).max()) < 9
    for r, m in zip(g.response_ids, g.response_mask):
        n = int(m.sum())
        assert (r[n:] == tiny_tok.pad_token_id).all()


def test_fake_engine_meets_the_contract(tiny_tok, prompts):
    check_contract(FakeEngine(tiny_tok, eos=tiny_tok.eos_token_id), tiny_tok, prompts, {tiny_tok.eos_token_id})


def test_ppo_drives_the_backend(tiny_sft, tmp_path):
    tok = load_tokenizer(str(tiny_sft))
    engine = FakeEngine(tok, eos=tok.eos_token_id)
    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "steps": 3, "save_steps": 100, "noptepochs": 2})
    trainer = PPOTrainer(cfg, reward=CallableReward(helpers_rewards.letter_e), out=tmp_path / "ppo", backend=engine)
    before = sum(float(p.detach().double().sum()) for p in trainer.actor_critic.policy.parameters())
    rows = []
    trainer.train(on_step=rows.append)
    # one weight sync per PPO step, after the optimisation phase (both epochs), each with new weights
    assert len(engine.syncs) == 3 and len(set([before, *engine.syncs])) == 4
    # the seeds are those of the prompts each step drew, so samples do not depend on batching
    expected = [derive_seed(cfg.seed, step, i) for step in range(3) for i in trainer._batch_indices(step)]
    assert engine.seeds_seen == expected
    # PPO reads the engine's masks: the logged response length is the mean mask length of the step
    for step, r in enumerate(rows):
        lengths = [int(torch.randint(1, cfg.response_len + 1, (), generator=torch.Generator().manual_seed(s)))
                   for s in expected[step * cfg.rollout_batch_size : (step + 1) * cfg.rollout_batch_size]]
        assert r["response_length"] == pytest.approx(sum(lengths) / len(lengths))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_sft, precision):
    from rlop.models.loading import load_reward_model
    from rlop.training.actor_critic import ActorCritic, disable_dropout

    precision("fp32")
    tok = load_tokenizer(str(tiny_sft))
    texts = [format_prompt(tok, e.instruction, e.input) for e in load_instructions("sandbox:unlabeled", limit=4)]
    enc, _ = encode_prompts(tok, texts, None)
    resp = torch.randint(100, 1000, (4, 6))
    rmask = torch.ones_like(resp)
    rmask[1, 3:] = 0
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        policy, value = load_causal_lm(str(tiny_sft)), load_reward_model(str(tiny_sft), zero_head=False)
        for m in (policy, value):
            disable_dropout(m)
            if ckpt:
                m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ac = ActorCritic(policy, value).train()
        lp, _, v = ac(enc["input_ids"], enc["attention_mask"], resp, rmask, 1.0)
        ((lp * rmask).sum() + (v * rmask).sum()).backward()
        grads.append({n: p.grad.clone() for n, p in ac.named_parameters() if p.grad is not None})
    assert policy.is_gradient_checkpointing and grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5), n
