"""Compute precision for every forward pass rlop runs.

``fp32``: plain float32. ``bf16``: weights, optimizer state and every loss stay float32;
matrix products run in bfloat16 under ``torch.autocast`` (the usual mixed precision).
``auto`` (the default) picks ``bf16`` where the hardware runs it natively (a CUDA GPU
with bf16, or a CPU with AVX512-BF16 or AMX) and ``fp32`` elsewhere; on a CPU without
native bf16 the emulated path is slower than fp32.

The setting is process-wide: ``rlop --precision`` or the ``RLOP_PRECISION`` environment
variable, or :func:`set_precision` from Python. Log-probabilities, rewards and losses are
always computed from float32 logits.
"""

from __future__ import annotations

import contextlib
import os

import torch

CHOICES = ("auto", "fp32", "bf16")
_setting = os.environ.get("RLOP_PRECISION", "auto")


def native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(c()) for c in checks if c is not None)


def set_precision(value: str) -> None:
    global _setting
    if value not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, not {value!r}")
    _setting = value


def resolve(device_type: str | None = None) -> str:
    """The precision actually used on ``device_type`` (default: cuda if available, else cpu)."""
    if _setting not in CHOICES:
        raise ValueError(f"RLOP_PRECISION must be one of {', '.join(CHOICES)}, not {_setting!r}")
    if _setting != "auto":
        return _setting
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16" if native_bf16(device_type) else "fp32"


def autocast(device) -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward passes on ``device`` (a no-op under fp32)."""
    device_type = torch.device(device).type
    if resolve(device_type) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
