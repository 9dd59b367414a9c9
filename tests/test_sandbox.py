"""Sandbox world: gold scorer table, annotators, determinism, splits."""

import hashlib

import pytest

from rlop.sandbox.gold import GoldAnnotator, NoisyAnnotator, gold_score, gold_success
from rlop.sandbox.world import SandboxConfig, build_world, export

NUM = lambda a: {"answer": a, "type": "number"}  # noqa: E731
CHOICE = {"answer": "770", "type": "choice", "options": ["770", "642"]}
WORD = {"answer": "nomlas", "type": "word"}
SEQ = {"answer": "hammer, puzzle, silver", "type": "sequence", "items": ["hammer", "puzzle", "silver"]}


def OPEN(*cons, topic="penguins"):
    return {"topic": topic, "constraints": list(cons)}


MAXW = {"type": "max_words", "n": 30}
BUL = {"type": "bullets", "n": 3}
KEY = {"type": "keyword", "word": "future"}
FORB = {"type": "forbidden", "word": "very"}
LOW = {"type": "lowercase"}
END = {"type": "ending", "phrase": "That is all."}
TITLE = {"type": "title"}
JSON = {"type": "json"}
SENT = {"type": "sentences", "n": 2}
P = "Penguins live in cold places. They swim very well and eat fish."
P_OK = "Penguins live in cold places. They swim well and eat fish."
REP = "penguins penguins are are great great " * 6

# (spec, response, expected success)
SUCCESS_CASES = [
    (NUM("61"), "The answer is 61.", True),
    (NUM("61"), "24 + 37 = 61", True),
    (NUM("61"), "61", True),
    (NUM("61"), "The answer is 62.", False),
    (NUM("61"), "I think it is 61, no wait, 60.", False),
    (NUM("61"), "", False),
    (NUM("61"), "sixty-one", False),
    (NUM("-4"), "The result is -4.", True),
    (NUM("1000"), "3 kilometers is 3,000 meters... sorry, 1,000", True),
    (NUM("3"), "The letter appears 3 times.", True),
    (NUM("3"), "The letter appears three times.", False),
    (NUM("31"), "Anna is 31 years old.", True),
    (NUM("31"), REP, False),
    (CHOICE, "770 is larger than 642.", True),
    (CHOICE, "The larger number is 770.", True),
    (CHOICE, "642 is smaller than 770.", False),
    (CHOICE, "Neither.", False),
    (CHOICE, "642", False),
    (WORD, "nomlas", True),
    (WORD, "The word backwards is 'nomlas'.", True),
    (WORD, "salmon", False),
    (WORD, "nomals", False),
    (WORD, "", False),
    (SEQ, "hammer, puzzle, silver", True),
    (SEQ, "Answer: hammer, puzzle, silver", True),
    (SEQ, "silver, puzzle, hammer", False),
    (SEQ, "hammer, silver, puzzle", False),
    (SEQ, "hammer", False),
    (OPEN(MAXW), P, True),
    (OPEN(MAXW), P + " " + P + " " + P, False),
    (OPEN(MAXW), "Cats are nice pets and fun to have.", False),  # off topic
    (OPEN(BUL), "- Penguins swim.\n- Penguins walk.\n- Penguins eat fish.", True),
    (OPEN(BUL), "- Penguins swim.\n- Penguins walk.", False),
    (OPEN(BUL), "* Penguins swim.\n* They walk.\n* They eat fish.", False),  # asked for '- '
    (OPEN(BUL), "- Cars go.\n- Cars stop.\n- Cars honk.", False),
    (OPEN(KEY), "Penguins may face a hard future as ice melts.", True),
    (OPEN(KEY), P_OK, False),
    (OPEN(KEY), "future future future", False),
    (OPEN(FORB), P_OK, True),
    (OPEN(FORB), P, False),
    (OPEN(LOW), "penguins are birds that cannot fly.", True),
    (OPEN(LOW), "Penguins are birds that cannot fly.", False),
    (OPEN(LOW), "12345", False),
    (OPEN(END), "Penguins are wonderful birds. That is all.", True),
    (OPEN(END), "That is all. Penguins are wonderful birds.", False),
    (OPEN(TITLE), "<<All About Penguins>>\nPenguins are birds.", True),
    (OPEN(TITLE), "All About Penguins\nPenguins are birds.", False),
    (OPEN(JSON), '{"topic": "penguins", "text": "Penguins swim."}', True),
    (OPEN(JSON), '```json\n{"penguins": "they swim"}\n```', True),
    (OPEN(JSON), "Penguins swim: {not json}", False),
    (OPEN(JSON), '```JSON\n{"penguins": "they swim"}\n```', True),  # an upper-case fence is still a fence
    (OPEN(TITLE), "<<   >>\nPenguins live in cold places and swim well in the sea.", False),  # a blank title is no title
    (OPEN(TITLE), "<<Penguins: a < b > c>>\nPenguins live in cold places and swim well in the sea.", True),
    (OPEN(BUL), "Penguins:\n* swim well\n* eat fish\n* live in the cold", False),  # the instruction asks for '- '
    (OPEN(BUL), "Penguins:\n- swim well\n- eat fish\n- live in the cold", True),
    (OPEN(MAXW, topic="pingüinos"), "Los pingüinos nadan muy bien en el mar frío del sur y comen peces pequeños.", True),
    (OPEN(JSON), '["penguins"]', False),
    (OPEN(SENT), P_OK, True),
    (OPEN(SENT), "Penguins swim. They eat. They sleep.", False),
    (OPEN(MAXW, KEY), "Penguins have a bright future in zoos.", True),
    (OPEN(MAXW, KEY), "Penguins have a bright life in zoos.", False),
    (OPEN(LOW, MAXW), "penguins are cute.", True),
    (OPEN(KEY, FORB), "The future of penguins is very uncertain.", False),
    (OPEN(MAXW, topic="public transport"), "Buses and trains make public transport useful for everyone.", True),
    (OPEN(MAXW), "", False),
    (OPEN(MAXW), REP, False),
]


@pytest.mark.parametrize("spec,response,expected", SUCCESS_CASES)
def test_gold_success_table(spec, response, expected):
    assert gold_success(spec, response) is expected


# (spec, better, worse): the gold annotator must prefer the first
PAIR_CASES = [
    (NUM("61"), "61", "62"),
    (NUM("61"), "The answer is 61.", ""),
    (NUM("61"), "The answer is 61.", REP),
    (NUM("61"), "61", "The answer is 61, which I computed carefully by adding the two numbers one digit at a time."),
    (CHOICE, "770", "642"),
    (WORD, "nomlas", "salmon"),
    (SEQ, "hammer, puzzle, silver", "silver, puzzle, hammer"),
    (OPEN(MAXW), P_OK, ""),
    (OPEN(MAXW), P_OK, REP),
    (OPEN(MAXW), P_OK, "Cats are nice."),  # off-topic text meeting the format loses
    (OPEN(BUL), "- Penguins swim.\n- They walk.\n- They eat fish.", "- Cars go.\n- Cars stop.\n- Cars honk."),
    (OPEN(LOW), "penguins are birds that cannot fly.", "the the the the the the the the the the the the the"),
    (OPEN(JSON), '{"text": "Penguins swim."}', "{}"),
    (OPEN(KEY, MAXW), "Penguins have a bright future.", "Penguins have a bright life."),
]


@pytest.mark.parametrize("spec,better,worse", PAIR_CASES)
def test_gold_annotator_pairs(spec, better, worse):
    g = GoldAnnotator()
    assert gold_score(spec, better) > gold_score(spec, worse)
    assert g.prefer(spec, better, worse) == 1
    assert g.prefer(spec, worse, better) == 2


def test_identical_outputs_tie_and_equal_scores_are_order_consistent():
    g = GoldAnnotator()
    assert g.prefer(NUM("1"), "1", "1") == 0
    a, b = "The answer is 5.", "The result is 5."  # both wrong, same length: equal score
    assert gold_score(NUM("1"), a) == gold_score(NUM("1"), b)
    assert {g.prefer(NUM("1"), a, b), g.prefer(NUM("1"), b, a)} == {1, 2}


def test_noisy_annotator_flip_rate_and_seed():
    spec = NUM("61")
    noisy = NoisyAnnotator(0.25, seed=3)
    verdicts = [noisy.prefer(spec, "61", f"{i} is wrong") for i in range(2000)]
    flip = sum(v == 2 for v in verdicts) / len(verdicts)
    assert 0.22 < flip < 0.28
    assert verdicts == [NoisyAnnotator(0.25, seed=3).prefer(spec, "61", f"{i} is wrong") for i in range(2000)]


def test_splits_disjoint_and_eval_unseen():
    w = build_world(SandboxConfig(sft=300, preference=300, unlabeled=300, val=50, eval=100))
    keys = {s: {(t.instruction, t.input) for t in ts} for s, ts in w.items()}
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not keys[a] & keys[b], (a, b)
    from rlop.sandbox.tasks import EVAL_TOPICS

    train_text = " ".join(t.instruction for s in ("sft", "preference", "unlabeled", "val") for t in w[s])
    assert not any(topic in train_text for topic in EVAL_TOPICS)
    assert len({t.family for t in w["eval"]}) >= 10


def test_export_is_byte_identical_per_seed(tmp_path):
    small = dict(sft=50, preference=50, unlabeled=50, val=20, eval=20)
    digests = []
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = export(tmp_path / run, SandboxConfig(seed=seed, **small))
        digests.append({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(out.iterdir())})
    assert digests[0] == digests[1]
    assert digests[0]["eval.jsonl"] != digests[2]["eval.jsonl"]


def test_sft_demonstrations_meet_the_gold():
    from rlop.sandbox.world import sft_examples

    cfg = SandboxConfig(sft=200)
    exs = sft_examples(build_world(cfg), cfg)
    ok = sum(gold_success(e.meta["spec"], e.output) for e in exs)
    assert ok >= 0.97 * len(exs)


def test_words_are_counted_in_every_script():
    from rlop.sandbox.gold import _words, constraint_met

    assert _words("Los pingüinos don't swim") == ["Los", "pingüinos", "don't", "swim"]
    assert len(_words("企鹅生活在寒冷的地方")) == 10  # one word per CJK character, not 0
    assert not constraint_met({"type": "max_words", "n": 5}, "企鹅生活在寒冷的地方") and constraint_met({"type": "max_words", "n": 5}, "企鹅生活")


def test_collect_labels_the_policys_own_samples(tmp_path):
    """sandbox:preference already holds a ready-made pair per prompt; collect must keep the policy's samples."""
    import json

    from rlop.data.io import load_instructions
    from rlop.models.generation import SamplingConfig
    from rlop.models.sampling import sample_responses
    from rlop.sandbox.collect import collect

    path = collect("tiny", "sandbox:preference", tmp_path / "c", max_prompts=4, max_new_tokens=8, seed=3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    sets = sample_responses("tiny", load_instructions("sandbox:preference", limit=4), 2, SamplingConfig(8, 1.0, 0.9, 0, True, 32), 3)
    samples = {s.example.instruction: set(s.responses) for s in sets}
    assert rows and all({r["output_1"], r["output_2"]} == samples[r["instruction"]] for r in rows)
