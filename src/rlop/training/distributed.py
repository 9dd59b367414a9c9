"""Cross-process helpers for losses that need the global batch (MIB negatives)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients to the local part.

    Every process then computes the same global loss; autograd's all-gather sums the
    gradient of all copies back into each local slice, and DDP's averaging over processes
    turns that into exactly the single-process gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x.contiguous()), dim=0)
