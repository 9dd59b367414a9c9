"""The RLP experiment's protocol: the beta schedule, matched retraining, the null arm's placebo,
and the over-optimisation curve (snapshots scored on identical prompts and seeds)."""

import json
import math

import pytest
import torch

from rlop.cli import main
from rlop.evaluation.overopt import peak_summary
from rlop.training.losses import beta_at
from rlop.training.reward_data import epoch_order, matched_order


def test_beta_schedule_values():
    assert [beta_at(s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]  # the paper's equation: beta = 1 throughout
    b = lambda s: beta_at(s, 100, "exponential", start=1e-3, end=1.0)  # noqa: E731
    # flat at 1e-3 for the first third (steps 0..33), then log-linear to 1 at the last step (99)
    assert b(0) == b(33) == 1e-3
    assert b(66) == pytest.approx(math.sqrt(1e-3), rel=1e-9)  # halfway up the ramp: the geometric mean
    assert b(99) == pytest.approx(1.0)
    assert all(b(s) < b(s + 1) for s in range(33, 99))


def test_matched_order_keeps_d_in_the_plain_order_and_slots_depend_on_the_count_only():
    n, k, gbs = 40, 6, 8
    plain = epoch_order(n, 40, seed=3)  # a run on D alone: 5 steps of 8
    merged = matched_order(n, k, 1.0, gbs, seed=3)
    assert len(merged) == 40 + 0 and len(merged) % gbs == 0  # 46 pairs, cut at the last full batch (5 x 8)
    assert [i for i in merged if i < n] == plain[: len([i for i in merged if i < n])]  # D keeps its order
    assert matched_order(n, k, 1.0, gbs, seed=3) == merged  # a placebo of the same size lands in the same slots
    assert matched_order(n, 0, 1.0, gbs, seed=3) == plain  # nothing added: the run on D alone
    two = matched_order(n, k, 2.0, 1, seed=3)  # two epochs (no batch to cut at): D twice in its order, every synthetic pair twice
    assert sorted(i for i in two if i >= n) == sorted(list(range(n, n + k)) * 2)
    assert [i for i in two if i < n] == epoch_order(n, 2 * n, seed=3)


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_matched_retraining_without_additions_gives_the_step2_weights(tmp_path, views_file):
    """With no synthetic pairs and lambda = 0, a retrained RM under the matched protocol is rm, weight for weight:
    what differs between rm and a retrained RM is then only what its variant adds."""
    base = ["reward", "--preset", "tiny", "--max-train-pairs", "32", "--seed", "5"]
    assert main([*base, "--out", str(tmp_path / "rm")]) == 0
    assert main([*base, "--pair-order", "matched", "--views", str(views_file), "--rep-loss", "mib", "--lambda", "0",
                 "--out", str(tmp_path / "rm-uml-null")]) == 0
    a, b = _weights(tmp_path / "rm"), _weights(tmp_path / "rm-uml-null")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the MIB term, at lambda > 0, does change them (the comparison can see a variant's contribution)
    assert main([*base, "--pair-order", "matched", "--views", str(views_file), "--rep-loss", "mib", "--lambda", "1",
                 "--out", str(tmp_path / "rm-uml")]) == 0
    c = _weights(tmp_path / "rm-uml")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_placebo_has_the_variants_size_and_instructions():
    from rlop.data.io import InstructionExample
    from rlop.data.samples import SampleSet
    from rlop.rlp.spg import placebo_pairs

    sets = [SampleSet(InstructionExample(f"q{i}", "", meta={}), [f"r{i}-{j % 3}" for j in range(6)]) for i in range(30)]
    kept = [{"instruction": f"q{i}", "input": "", "output_1": "x", "output_2": "y", "preference": 1} for i in range(0, 30, 2)]
    rows = placebo_pairs(sets, kept, seed=0)
    assert len(rows) == len(kept) and [r["instruction"] for r in rows] == [k["instruction"] for k in kept]
    for r in rows:
        i = r["instruction"][1:]
        assert r["output_1"] != r["output_2"] and {r["output_1"], r["output_2"]} <= {f"r{i}-{j}" for j in range(3)}
    labels = [r["preference"] for r in rows]
    assert set(labels) == {1, 2}  # coin flips, not SPG's selection
    assert placebo_pairs(sets, kept, seed=0) == rows and placebo_pairs(sets, kept, seed=1) != rows


def test_peak_summary_on_a_hand_made_curve():
    per = {0: [0.0, 0.0, 0.0, 0.0], 8: [1.0, 1.0, 1.0, 1.0], 16: [0.5, 0.5, 0.5, 0.5]}
    per_prompt = {s: {"gold": g, "proxy": [float(s)] * 4, "kl": [s / 8] * 4} for s, g in per.items()}
    points = [{"step": s, "gold": sum(g) / 4, "proxy": float(s), "kl": s / 8} for s, g in per.items()]
    s = peak_summary(points, per_prompt)
    assert (s["peak_step"], s["peak_kl"], s["last_step"]) == (8, 1.0, 16)
    assert s["drop"]["diff"] == pytest.approx(0.5) and s["drop"]["ci_low"] == pytest.approx(0.5)
    assert s["drop_heldout"]["peak_step"] == 8 and s["drop_heldout"]["diff"] == pytest.approx(0.5)
    assert s["proxy_change"] == 8.0 and s["gold_fell_proxy_rose"]


def test_every_snapshot_is_scored_on_identical_prompts_and_seeds(tmp_path, tiny_sft, monkeypatch):
    import rlop.evaluation.overopt as oo

    ppo = tmp_path / "ppo"
    assert main(["ppo", "--preset", "tiny", "--policy", str(tiny_sft), "--reward", "gold", "--steps", "4", "--snapshot-steps", "2",
                 "--out", str(ppo)]) == 0
    assert sorted(p.name for p in (ppo / "snapshots").iterdir()) == ["step-00002", "step-00004"]
    rm = tmp_path / "rm"
    assert main(["reward", "--preset", "tiny", "--model", str(tiny_sft), "--max-train-pairs", "16", "--out", str(rm)]) == 0
    calls = []
    real = oo.make_backend

    def recording(model, tok, **kw):
        backend = real(model, tok, **kw)
        generate = backend.generate

        def gen(prompts, sampling, seeds):
            calls[-1].append((tuple(prompts), tuple(seeds)))
            return generate(prompts, sampling, seeds)

        backend.generate = gen
        calls.append([])
        return backend

    monkeypatch.setattr(oo, "make_backend", recording)
    out = tmp_path / "curve"
    assert main(["overopt", "--preset", "tiny", "--ppo-dir", str(ppo), "--reference", str(tiny_sft), "--reward", str(rm),
                 "--max-prompts", "6", "--samples", "3", "--batch-size", "4", "--out", str(out)]) == 0
    assert len(calls) == 3 and calls[0] == calls[1] == calls[2]  # SFT, step 2, step 4: the same prompts and seeds
    assert len({p for batch in calls[0] for p in batch[0]}) == 6
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [0, 2, 4]
    assert curve["points"][0]["kl"] == 0.0  # SFT against itself
    assert all(len(v) == 6 for v in curve["per_prompt"]["4"].values())
    assert (out / "overopt.png").stat().st_size > 0


def test_tiny_run_with_snapshots_and_the_null_arm(tmp_path):
    """rlop run with snapshots, matched retraining, the null arm and no step 5: the curve, the paired table, the report."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("ppo:\n  snapshot_steps: 3\noveropt:\n  max_prompts: 6\n  samples: 2\n")
    out = tmp_path / "run"
    assert main(["run", "--preset", "tiny", "--methods", "sft,ppo,rlp-spg,rlp-uml,rlp-ocrm", "--matched-retraining", "--null-arm",
                 "--step5", "false", "--judge", "answer", "--config", str(cfg), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]) == {"sft", "ppo"}  # no step 5: RLP's reward models are compared in the diagnostics only
    assert not (out / "ppo-spg").exists() and not (out / "ppo-uml").exists()
    curve = res["overopt"]["ppo"]
    assert [p["step"] for p in curve["points"]] == [0, 3, 6]
    vs_null = res["diagnostics"]["vs_null"]
    rows = vs_null["heldout_ppo_samples"]
    assert rows["rm-spg"]["null"] == "rm-spg-null" and rows["rm-uml"]["null"] == "rm"  # matched: UML's null (lambda 0) is rm
    assert rows["rm-ocrm"]["null"] == "rm-ocrm-null"
    weights = [json.loads(l)["weight"] for l in open(out / "ocrm" / "weights.jsonl")]
    shuffled = [json.loads(l)["weight"] for l in open(out / "ocrm-null" / "weights.jsonl")]
    assert sorted(weights) == sorted(shuffled) and sum(weights) / len(weights) == pytest.approx(1.0)
    assert "ocrm_weights" in res["diagnostics"] and "effective sample size" in (out / "report.md").read_text()
    spg = [json.loads(l) for l in open(out / "spg" / "synthetic.jsonl")]
    null = [json.loads(l) for l in open(out / "spg-null" / "synthetic.jsonl")]
    assert [p["instruction"] for p in null] == [p["instruction"] for p in spg]
    for name in ("rm-spg", "rm-spg-null", "rm-uml", "rm-ocrm", "rm-ocrm-null"):
        stage = json.loads((out / name / "stage.json").read_text())
        assert stage["config"]["seed"] == json.loads((out / "rm" / "stage.json").read_text())["config"]["seed"]
        assert stage["config"]["pair_order"] == "matched"
    report = (out / "report.md").read_text()
    assert "against their null arm" in report and "Over-optimisation" in report
    assert (out / "overopt.png").exists()


def test_ocrm_weights_on_a_hand_computed_case():
    from rlop.rlp.ocrm import effective_sample_size, pair_weights

    cp, cr, rp, rr = [-10.0, -20.0], [-12.0, -20.0], [-5.0, -8.0], [-5.0, -6.0]
    # plain ratio, mult 0.5: pair 1 0.5 * (2 + 0) = 1; pair 2 0.5 * (0 - 2) = -1; normalised by the mean over D
    w = pair_weights(cp, cr, rp, rr, mult=0.5, alpha=0.0)
    mean = (math.e + math.exp(-1)) / 2
    assert w.tolist() == pytest.approx([math.e / mean, math.exp(-1) / mean])
    assert pair_weights(cp, cr, rp, rr, mult=0.5, alpha=0.0, normalize="none").tolist() == pytest.approx([math.e, math.exp(-1)])
    # relative density ratio: log p - log(alpha p + (1 - alpha) p_ref)
    rel = lambda a, b: a - math.log(0.1 * math.exp(a) + 0.9 * math.exp(b))  # noqa: E731
    lw = [0.5 * (rel(cp[i], cr[i]) + rel(rp[i], rr[i])) for i in range(2)]
    got = pair_weights(cp, cr, rp, rr, mult=0.5, alpha=0.1, normalize="none").tolist()
    assert got == pytest.approx([math.exp(x) for x in lw])
    assert pair_weights(cp, cr, rp, rr, mult=0.0).tolist() == [1.0, 1.0]  # mult 0: plain Bradley-Terry
    assert effective_sample_size([1.0, 1.0, 1.0]) == pytest.approx(3.0) and effective_sample_size([1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_response_logprob_sums_match_a_full_forward(tiny_sft):
    """The summed response log-probs (EOS appended) equal log-softmax over the concatenated sequence."""
    from rlop.data.formatting import format_prompt
    from rlop.models.loading import load_causal_lm, load_tokenizer
    from rlop.rlp.ocrm import OCRMConfig, response_logprob_sums

    tok, model = load_tokenizer(str(tiny_sft)), load_causal_lm(str(tiny_sft)).eval()
    prompts = [format_prompt(tok, "Add 2 and 3.", ""), format_prompt(tok, "Name a colour.", "")]
    responses = ["5", "The colour is blue"]
    got = response_logprob_sums(model, tok, prompts, responses, OCRMConfig(reference=str(tiny_sft), batch_size=2, precision="fp32"))
    for p, r, g in zip(prompts, responses, got):
        q = tok(p, add_special_tokens=False)["input_ids"]
        y = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([q + y])).logits[0].float()
        lp = torch.log_softmax(logits[len(q) - 1 : -1], -1).gather(1, torch.tensor(y).unsqueeze(1)).sum().item()
        assert g == pytest.approx(lp, abs=1e-3)


def test_weighted_loss_with_unit_weights_is_the_unweighted_one(tmp_path):
    from rlop.training.losses import bradley_terry_loss

    c, r = torch.randn(6), torch.randn(6)
    assert torch.equal(bradley_terry_loss(c, r, torch.ones(6)), bradley_terry_loss(c, r))
    w = torch.tensor([2.0, 0.0, 1.0, 1.0, 0.5, 1.5])
    assert bradley_terry_loss(c, r, w).item() == pytest.approx((-torch.nn.functional.logsigmoid(c - r) * w).mean().item())
    # in the trainer: a weights file of ones gives the unweighted model, weight for weight
    from rlop.data.io import load_preferences
    from rlop.utils import write_jsonl

    pairs = load_preferences("sandbox:preference")[:40]
    write_jsonl(tmp_path / "w.jsonl", [{"instruction": p.instruction, "input": p.input, "chosen": p.chosen, "rejected": p.rejected, "weight": 1.0}
                                       for p in pairs])
    base = ["reward", "--preset", "tiny", "--max-train-pairs", "24", "--seed", "2"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--pair-weights-file", str(tmp_path / "w.jsonl"), "--out", str(tmp_path / "b")]) == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
