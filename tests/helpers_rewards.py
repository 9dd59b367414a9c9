"""Programmatic rewards for tests (importable as python:tests.helpers_rewards:NAME)."""

import math

CALLS = {"n": 0}


def letter_e(instruction, input, response):
    """10 x the share of characters that are 'e': easy for a tiny policy to raise."""
    return 10.0 * response.count("e") / max(len(response), 1)


def nan_after_two_steps(instruction, input, response):
    CALLS["n"] += 1
    return math.nan if CALLS["n"] > 64 else 0.0
