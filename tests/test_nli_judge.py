"""The NLI equivalence judge's whole path with a tiny random sequence-classification model that
carries an MNLI-style label map (no NLI model is on disk here)."""

import pytest
import torch

from rlop.rlp.judges import NLIJudge

LABELS = {0: "NEUTRAL", 1: "CONTRADICTION", 2: "ENTAILMENT"}  # not MNLI's usual order: the judge must read the map


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory, tiny_tok):
    from transformers import LlamaForSequenceClassification

    from rlop.models.loading import tiny_config

    cfg = tiny_config(tiny_tok)
    cfg.num_labels, cfg.id2label, cfg.label2id = 3, LABELS, {v: k for k, v in LABELS.items()}
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg)
    out = tmp_path_factory.mktemp("nli")
    model.save_pretrained(out)
    tiny_tok.save_pretrained(out)
    return out


def test_label_map_comes_from_the_model_config(nli_dir):
    judge = NLIJudge(str(nli_dir))
    assert (judge.entail, judge.contra) == (2, 1)


def test_batches_and_truncation_do_not_change_labels(nli_dir):
    small, big = NLIJudge(str(nli_dir), batch_size=2), NLIJudge(str(nli_dir), batch_size=16)
    premises = ["the answer is 4", "it is four", "five", "word " * 3000, "no"]
    hyps = ["4", "the answer is four", "5", "many words", "yes"]
    labels = small._labels(premises, hyps)
    assert labels == big._labels(premises, hyps) and all(v in LABELS for v in labels)


def test_both_directions_and_both_rules(nli_dir, monkeypatch):
    calls = []
    script = {("Q a", "Q b"): 2, ("Q b", "Q a"): 0, ("Q c", "Q d"): 2, ("Q d", "Q c"): 2, ("Q e", "Q f"): 1, ("Q f", "Q e"): 2}

    def fake_labels(self, premises, hyps):
        calls.append((list(premises), list(hyps)))
        return [script[(p, h)] for p, h in zip(premises, hyps)]

    monkeypatch.setattr(NLIJudge, "_labels", fake_labels)
    pairs = [("a", "b"), ("c", "d"), ("e", "f")]
    lenient, strict = NLIJudge(str(nli_dir), rule="lenient"), NLIJudge(str(nli_dir), rule="strict")
    # lenient: no contradiction in either direction; strict: entailment both ways
    assert lenient.equivalent("Q", pairs) == [True, True, False]
    assert strict.equivalent("Q", pairs) == [False, True, False]
    assert calls[0] == (["Q a", "Q c", "Q e"], ["Q b", "Q d", "Q f"]) and calls[1] == (["Q b", "Q d", "Q f"], ["Q a", "Q c", "Q e"])


def test_spg_gives_the_nli_judge_the_instruction_and_its_input():
    from rlop.data.examples import InstructionExample
    from rlop.data.samples import SampleSet
    from rlop.rlp.spg import SPGConfig, generate

    seen = []

    class Judge:
        def equivalent(self, instruction, pairs):
            seen.append(instruction)
            return [False] * len(pairs)

    s = SampleSet(InstructionExample("Summarise:", "the text", None, {}), ["a", "b"])
    generate([s], SPGConfig(), reward=lambda ex, r: [0.0] * len(r), judge=Judge())
    assert seen and all(i == "Summarise:\n\nthe text" for i in seen)
