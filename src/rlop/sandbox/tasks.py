"""Task families of the sandbox. Each family makes a task from a seeded RNG and a split kind.

A task is an instruction (plus optional input), a ``family``, a ``kind`` (``answer`` for
definite-answer tasks, ``open`` for constraint tasks), and a ``spec`` that the gold scorer
reads: the gold answer, or the topic and constraint list. Families hold two template pools,
one for training splits and one used only by the eval split, and topics are split the same
way, so eval instructions are worded unlike anything seen in training.
"""

from __future__ import annotations

import random
from typing import Any, Callable

TRAIN_TOPICS = [
    "gardening", "the ocean", "coffee", "bicycles", "libraries", "volcanoes", "chess", "rainforests", "trains",
    "bread baking", "honeybees", "the moon", "recycling", "museums", "mountains", "photography", "jazz music",
    "penguins", "solar power", "friendship", "winter", "city parks", "the internet", "sleep", "dinosaurs",
    "bridges", "tea", "rivers", "kites", "football", "robots", "birds", "deserts", "painting", "vaccines",
    "forests", "airplanes", "cheese", "islands", "butterflies", "clocks", "poetry", "swimming", "cooking", "maps",
    "bees", "castles", "electricity", "fishing", "gardens", "hiking", "insects", "knitting", "languages", "music",
    "newspapers", "olympics", "pizza", "rain", "science fairs", "snowflakes", "theaters", "tigers", "video games", "yoga",
]
EVAL_TOPICS = ["lighthouses", "origami", "glaciers", "public transport", "astronomy", "chocolate", "whales", "board games", "pottery", "wind energy"]

NAMES = ["Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam", "Maya", "Noah", "Olga", "Pavel"]
WORDS = """apple river candle market orange pencil garden window silver rocket forest castle planet butter yellow mirror
ticket dragon pillow basket harbor violin meadow lantern banana bottle bridge button camera carpet cherry circle cookie
copper cotton dinner doctor engine falcon farmer finger flower folder friend guitar hammer helmet island jacket jungle
kettle ladder lemon letter magnet marble monkey needle number office paper parrot pepper pickle pirate pocket potato
puzzle rabbit ribbon saddle salmon shadow shovel singer spider spring statue summer sunset tablet teacher thunder tomato
tunnel turtle valley wallet walnut winter wizard yogurt zipper anchor beacon blanket cactus canyon compass crystal
dolphin feather glacier horizon lobster mango orchard pelican quartz sparrow thimble tulip velvet walrus""".split()
SENT_WORDS = ["the", "cat", "sat", "quietly", "near", "a", "warm", "fire", "while", "children", "played", "outside", "in", "snow",
              "we", "walked", "along", "old", "road", "to", "see", "bright", "stars", "above", "hills"]


def pick(rng: random.Random, train: list[str], evals: list[str], split: str) -> str:
    return rng.choice(evals if split == "eval" else train)


# ------------------------------------------------------------------ definite-answer families


def arithmetic(rng, split):
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    op = rng.choice(["+", "-", "+"])
    ans = a + b if op == "+" else a - b
    t = pick(rng, ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b} and give the result."],
             ["Work out the value of {a} {op} {b}.", "If you take {a} {word} {b}, what number do you get?"], split)
    word = "plus" if op == "+" else "minus"
    return dict(instruction=t.format(a=a, b=b, op=op, word=word), input="", spec={"answer": str(ans), "type": "number"})


def letter_count(rng, split):
    w = rng.choice(WORDS)
    letter = rng.choice(sorted(set(w)))
    t = pick(rng, ["How many times does the letter '{l}' appear in the word '{w}'?", "Count the letter '{l}' in '{w}'."],
             ["In the word '{w}', how often do you find the letter '{l}'?"], split)
    return dict(instruction=t.format(l=letter, w=w), input="", spec={"answer": str(w.count(letter)), "type": "number"})


def word_count(rng, split):
    n = rng.randint(3, 9)
    sent = " ".join(rng.choice(SENT_WORDS) for _ in range(n)).capitalize() + "."
    t = pick(rng, ["How many words are in the following sentence?", "Count the words in this sentence."],
             ["Tell me the number of words in the sentence below."], split)
    return dict(instruction=t, input=sent, spec={"answer": str(n), "type": "number"})


def compare_numbers(rng, split):
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    while a == b:
        b = rng.randint(10, 999)
    big = "larger" if rng.random() < 0.5 else "smaller"
    ans = max(a, b) if big == "larger" else min(a, b)
    t = pick(rng, ["Which number is {big}: {a} or {b}?", "Of {a} and {b}, which one is {big}?"],
             ["Between {a} and {b}, name the {big} number."], split)
    return dict(instruction=t.format(a=a, b=b, big=big), input="", spec={"answer": str(ans), "type": "choice", "options": [str(a), str(b)]})


UNITS = [("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("hours", "minutes", 60), ("minutes", "seconds", 60),
         ("kilograms", "grams", 1000), ("days", "hours", 24), ("weeks", "days", 7), ("liters", "milliliters", 1000)]


def unit_conversion(rng, split):
    src, dst, f = rng.choice(UNITS)
    x = rng.randint(2, 60)
    t = pick(rng, ["Convert {x} {src} to {dst}.", "How many {dst} are in {x} {src}?"], ["Express {x} {src} in {dst}."], split)
    return dict(instruction=t.format(x=x, src=src, dst=dst), input="", spec={"answer": str(x * f), "type": "number"})


def reverse_word(rng, split):
    w = rng.choice(WORDS)
    t = pick(rng, ["Reverse the word '{w}'.", "Write the word '{w}' backwards.", "What is '{w}' spelled backwards?",
                   "Reverse the letters of '{w}'."], ["Spell '{w}' in reverse order."], split)
    return dict(instruction=t.format(w=w), input="", spec={"answer": w[::-1], "type": "word"})


def sort_words(rng, split):
    ws = rng.sample(WORDS, rng.randint(3, 4))
    t = pick(rng, ["Sort these words alphabetically: {ws}.", "Put the following words in alphabetical order: {ws}."],
             ["Arrange {ws} in dictionary order."], split)
    return dict(instruction=t.format(ws=", ".join(ws)), input="", spec={"answer": ", ".join(sorted(ws)), "type": "sequence", "items": sorted(ws)})


def table_lookup(rng, split):
    people = rng.sample(NAMES, 3)
    attr = rng.choice(["age", "score"])
    vals = [rng.randint(18, 70) if attr == "age" else rng.randint(40, 100) for _ in people]
    table = f"name | {attr}\n" + "\n".join(f"{p} | {v}" for p, v in zip(people, vals))
    i = rng.randrange(3)
    t = pick(rng, ["Using the table, what is {p}'s {attr}?", "Look up the {attr} of {p} in the table."],
             ["According to the table below, report {p}'s {attr}."], split)
    return dict(instruction=t.format(p=people[i], attr=attr), input=table, spec={"answer": str(vals[i]), "type": "number"})


# ------------------------------------------------------------------ open families (IFEval-like constraints)


def _constraint(rng, kind: str, topic: str) -> dict[str, Any]:
    if kind == "max_words":
        return {"type": "max_words", "n": rng.choice([30, 40, 50, 60])}
    if kind == "bullets":
        return {"type": "bullets", "n": rng.randint(2, 4)}
    if kind == "keyword":
        return {"type": "keyword", "word": rng.choice(["important", "simple", "history", "future", "people", "nature"])}
    if kind == "forbidden":
        return {"type": "forbidden", "word": rng.choice(["very", "really", "thing", "good"])}
    if kind == "lowercase":
        return {"type": "lowercase"}
    if kind == "ending":
        return {"type": "ending", "phrase": rng.choice(["Thank you.", "That is all.", "Any questions?"])}
    if kind == "title":
        return {"type": "title"}
    if kind == "json":
        return {"type": "json"}
    if kind == "sentences":
        return {"type": "sentences", "n": rng.randint(2, 3)}
    raise ValueError(kind)


def describe(c: dict[str, Any]) -> str:
    return {
        "max_words": lambda: f"Use fewer than {c['n']} words.",
        "bullets": lambda: f"Answer with exactly {c['n']} bullet points, each starting with '- '.",
        "keyword": lambda: f"Include the word '{c.get('word')}'.",
        "forbidden": lambda: f"Do not use the word '{c.get('word')}'.",
        "lowercase": lambda: "Write everything in lowercase letters.",
        "ending": lambda: f"End your answer with the exact phrase '{c.get('phrase')}'",
        "title": lambda: "Start with a title wrapped in double angular brackets, like <<my title>>.",
        "json": lambda: "Format the whole answer as a JSON object.",
        "sentences": lambda: f"Write exactly {c['n']} sentences.",
    }[c["type"]]()


def open_family(main: str, extra: tuple[str, ...] = ()) -> Callable:
    def make(rng, split):
        topic = pick(rng, TRAIN_TOPICS, EVAL_TOPICS, split)
        cons = [_constraint(rng, main, topic)]
        if extra and rng.random() < 0.5:
            k = rng.choice(extra)
            if k != main:
                cons.append(_constraint(rng, k, topic))
        lead = pick(rng, ["Write a short paragraph about {t}.", "Describe {t}.", "Explain why {t} is interesting.",
                          "Tell me something about {t}.", "Write a short note on {t}.", "What do you know about {t}?",
                          "Write a few lines about {t}.", "Say something nice about {t}.", "Write a short text on {t} for a child.",
                          "Summarize what makes {t} special."],
                    ["Give a brief overview of {t}.", "Share a few thoughts on {t}.", "Introduce {t} to a curious reader."], split)
        instr = lead.format(t=topic) + " " + " ".join(describe(c) for c in cons)
        return dict(instruction=instr, input="", spec={"topic": topic, "constraints": cons})

    return make


FAMILIES: dict[str, tuple[str, Callable]] = {
    "arithmetic": ("answer", arithmetic),
    "letter_count": ("answer", letter_count),
    "word_count": ("answer", word_count),
    "compare_numbers": ("answer", compare_numbers),
    "unit_conversion": ("answer", unit_conversion),
    "reverse_word": ("answer", reverse_word),
    "sort_words": ("answer", sort_words),
    "table_lookup": ("answer", table_lookup),
    "word_limit": ("open", open_family("max_words", ("keyword", "lowercase"))),
    "bullet_points": ("open", open_family("bullets", ("keyword", "forbidden"))),
    "keywords": ("open", open_family("keyword", ("forbidden", "max_words"))),
    "lowercase": ("open", open_family("lowercase", ("max_words",))),
    "ending_phrase": ("open", open_family("ending", ("keyword",))),
    "title_format": ("open", open_family("title", ("max_words",))),
    "json_format": ("open", open_family("json", ())),
    "sentence_count": ("open", open_family("sentences", ("keyword",))),
}


# ------------------------------------------------------------------ demonstrations and references

FILLER = [
    "{T} has a long and interesting history.",
    "Many people enjoy learning about {t}.",
    "There is always something new to discover about {t}.",
    "{T} connects to science, culture and daily life.",
    "Experts keep studying {t} to understand it better.",
    "Learning about {t} can be fun for all ages.",
]


def _sentences(rng: random.Random, topic: str, n: int) -> list[str]:
    pool = rng.sample(FILLER, min(n, len(FILLER)))
    return [s.format(t=topic, T=topic[0].upper() + topic[1:]) for s in pool]


def write_open(rng: random.Random, spec: dict[str, Any], satisfy: bool = True) -> str:
    """A response about the topic that meets every constraint (or deliberately misses one)."""
    topic, cons = spec["topic"], list(spec["constraints"])
    broken = rng.randrange(len(cons)) if not satisfy else -1
    types = {c["type"]: c for i, c in enumerate(cons) if i != broken}
    n_sent = types["sentences"]["n"] if "sentences" in types else 2
    sents = _sentences(rng, topic, n_sent)
    if "keyword" in types:
        sents[-1] = sents[-1][:-1] + f", and that is {types['keyword']['word']}."
    if "bullets" in types:
        body = "\n".join(f"- {s}" for s in _sentences(rng, topic, types["bullets"]["n"]))
    else:
        body = " ".join(sents)
    if "json" in types:
        import json

        body = json.dumps({"topic": topic, "text": body})
    if "title" in types:
        body = f"<<{topic.title()}>>\n{body}"
    if "ending" in types:
        body = body + " " + types["ending"]["phrase"]
    if "lowercase" in types:
        body = body.lower()
    if broken >= 0:
        c = cons[broken]
        if c["type"] == "keyword":
            pass
        elif c["type"] == "forbidden":
            body = body + f" It is a {c['word']} topic."
        elif c["type"] == "max_words":
            body = body + " " + " ".join(_sentences(rng, topic, 6)) * 2
        elif c["type"] == "sentences":
            body = body + " " + _sentences(rng, topic, 1)[0]
        elif c["type"] == "bullets":
            body = body + f"\n- {topic} matters."
    return body


def write_answer(rng: random.Random, task_family: str, spec: dict[str, Any], correct: bool = True) -> str:
    ans = spec["answer"]
    if not correct:
        if spec["type"] in ("number",):
            ans = str(int(ans) + rng.choice([-2, -1, 1, 2]))
        elif spec["type"] == "choice":
            ans = [o for o in spec["options"] if o != ans][0]
        elif spec["type"] == "word":
            ans = ans[1:] + ans[0]
        else:
            items = list(spec["items"])
            items[0], items[-1] = items[-1], items[0]
            ans = ", ".join(items)
    return rng.choice(["The answer is {a}.", "{a}", "Answer: {a}", "The result is {a}."]).format(a=ans)
