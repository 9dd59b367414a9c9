"""Cross-process helpers: the global batch for losses and statistics, and decoding in step.

Every function is the identity on one process, so single-process code paths stay plain."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients to the local part.

    Every process then computes the same global loss; autograd's all-gather sums the
    gradient of all copies back into each local slice, and DDP's averaging over processes
    turns that into exactly the single-process gradient.
    """
    if world_size() == 1:
        return x
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x.contiguous()), dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over processes (a new tensor; no gradient)."""
    if world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_processes(flag: torch.Tensor) -> bool:
    """True when ``flag`` (a bool tensor) is all true on every process.

    Sampling loops under sharding (FSDP, ZeRO-3) run collectives in every forward pass, so
    each process must stop decoding at the same step: when every row of every process is done."""
    done = flag.all().to(torch.int32).reshape(1)
    if world_size() == 1:
        return bool(done)
    dist.all_reduce(done, op=dist.ReduceOp.MIN)
    return bool(done)


def is_main_process() -> bool:
    """Whether this is the process that writes outputs (rank 0 under torchrun or accelerate launch).

    accelerate's state is created for CPU when no GPU is present: a bare ``PartialState()``
    under torchrun on CPU would see one process per rank and make every rank a writer."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).is_main_process
