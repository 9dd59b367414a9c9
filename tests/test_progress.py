"""The run-level progress view: stage counter, per-stage estimate, self-correcting run ETA."""

import time

from rlop.pipeline.progress import RunProgress, fmt_seconds


def test_eta_rescales_by_the_measured_speed():
    lines = []
    p = RunProgress({"a": 10.0, "b": 30.0, "c": 60.0}, log=lambda s, **kw: lines.append(s))
    assert p.remaining() == 100.0
    p.cached("a")  # cached stages cost nothing and do not change the speed estimate
    assert p.remaining() == 90.0
    p.finish("b", time.time() - 60.0)  # b took twice its estimate: so will c
    assert abs(p.remaining() - 120.0) < 1.0
    assert "stage 1/3 a: cached" in lines[0]
    assert "stage 2/3 b: done in 1m00s" in lines[1] and "run ETA 2m00s" in lines[1]


def test_start_line_names_stage_and_estimate():
    lines = []
    p = RunProgress({"sft": 90.0, "ppo": 600.0}, log=lambda s, **kw: lines.append(s))
    p.start("ppo")
    assert "stage 2/2 ppo: running, about 10m00s" in lines[0] and "run ETA 11m30s" in lines[0]


def test_format():
    assert fmt_seconds(59) == "0m59s" and fmt_seconds(3725) == "1h02m"


def test_eta_of_several_seeds_covers_the_seeds_to_come_and_learns_from_earlier_ones():
    timings = {}
    first = RunProgress({"sft": 10.0, "ppo": 40.0}, log=lambda *a, **k: None, timings=timings, later=40.0)  # one more seed: its ppo
    assert first.remaining() == 90.0
    first.finish("sft", time.time() - 20.0)  # twice as slow as estimated
    assert abs(first.remaining() - 160.0) < 1.0
    second = RunProgress({"sft": 10.0, "ppo": 40.0}, log=lambda *a, **k: None, timings=timings)
    second.cached("sft")  # shared: done by the first seed
    assert abs(second.remaining() - 80.0) < 1.0  # the speed measured in the first seed carries over
