"""Peak memory per stage (``stage.json`` → ``peak_rss_mb``): the window resets between stages."""

import os
import sys

import pytest

from rlop.utils import _proc_status_kb, peak_rss_mb, reset_peak_rss


def _rss_mb():
    return _proc_status_kb().get("VmRSS", 0) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-window peak needs Linux's clear_refs")
def test_peak_rss_sees_an_allocation_and_resets_after_it():
    if not reset_peak_rss():
        pytest.skip("clear_refs not writable here")
    before, rss_before = peak_rss_mb(), _rss_mb()
    block = bytearray(200 * 1024 * 1024)
    block[:: 4096] = b"\1" * len(block[:: 4096])  # touch every page so it is resident
    during = peak_rss_mb()
    if _rss_mb() - rss_before < 190:
        del block
        pytest.skip("this system does not count touched pages as resident (CI's sandbox): no peak to see")
    del block
    assert during - before >= 190, (before, during)
    assert peak_rss_mb() == pytest.approx(during, abs=5)  # a peak stays until the window resets
    assert reset_peak_rss()
    assert peak_rss_mb() < during - 150  # a new stage starts from what the process holds now


def test_a_reset_the_system_ignores_is_reported_as_not_done(monkeypatch):
    """Some sandboxes accept the write to clear_refs and keep VmHWM (CI did): the reset must say so,
    or a stage's peak would silently be the whole process's."""
    import rlop.utils as utils

    monkeypatch.setattr(utils, "_proc_status_kb", lambda: {"VmHWM": 2_000_000, "VmRSS": 900_000})
    assert utils.reset_peak_rss() is False  # written or not, a peak 1.1 GB above RSS was not reset
    monkeypatch.setattr(utils, "_proc_status_kb", lambda: {"VmHWM": 900_100, "VmRSS": 900_000})
    if os.access("/proc/self/clear_refs", os.W_OK):
        assert utils.reset_peak_rss() is True


def test_cuda_peak_is_reported_per_stage_where_cuda_is_in_use(monkeypatch):
    import torch

    import rlop.utils as utils

    assert utils.peak_cuda_mb() is None or torch.cuda.is_initialized()  # no CUDA here: nothing to report
    resets = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: resets.append(1))
    utils.reset_peak_cuda()
    assert resets == [1] and utils.peak_cuda_mb() == 3072
