"""Compute precision of rlop's forward passes: a field of every stage config that computes.

``fp32``: plain float32. ``bf16``: weights, optimizer state and every loss stay float32;
matrix products run in bfloat16 under ``torch.autocast`` (the usual mixed precision).
``auto`` (every field's default) is ``$RLOP_PRECISION`` where that is set (``fp32`` or
``bf16``; a way to pin a whole test suite or script), else ``bf16`` where the hardware runs it
natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX) and ``fp32`` elsewhere; on a
CPU without native bf16 the emulated path is slower than fp32.

A stage passes its ``precision`` to what it runs (the generation backend, the reward scorer,
the trainers); nothing here is process-wide state. Log-probabilities, rewards and losses are
always computed from float32 logits.
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
CHOICES = ("auto", "fp32", "bf16")
HELP = ("compute precision: auto ($RLOP_PRECISION if set, else bf16 autocast where the CPU/GPU runs bf16 natively, else fp32) | "
        "fp32 | bf16 (float32 weights and losses, bfloat16 matrix products)")


def native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(c()) for c in checks if c is not None)


def resolve(value: str = "auto", device_type: str | None = None) -> str:
    """The precision ``value`` stands for on ``device_type`` (default: cuda if available, else cpu): fp32 or bf16."""
    if value not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}, not {value!r}")
    if value != "auto":
        return value
    env = os.environ.get("RLOP_PRECISION", "auto")
    if env not in CHOICES:
        raise ValueError(f"RLOP_PRECISION must be one of {', '.join(CHOICES)}, not {env!r}")
    if env != "auto":
        return env
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16" if native_bf16(device_type) else "fp32"


def autocast(device, value: str = "auto") -> contextlib.AbstractContextManager:
    """Mixed-precision context for forward passes on ``device`` at precision ``value`` (a no-op under fp32)."""
    device_type = torch.device(device).type
    if resolve(value, device_type) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
