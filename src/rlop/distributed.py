"""Cross-process helpers: the global batch for losses and statistics, and decoding in step.

Every function is the identity on one process, so single-process code paths stay plain."""

from __future__ import annotations

import contextlib
from typing import Iterator

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


@contextlib.contextmanager
def trainer_scope(env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a transformers ``Trainer`` without leaving its process-wide settings behind.

    The Trainer creates accelerate's ``AcceleratorState`` with its own mixed precision, and every
    later ``Accelerator()`` of the process inherits it (a bf16 SFT would put the next stage's
    float32 forward passes under bf16 autocast). ``env`` holds variables the Trainer reads
    (transformers 5 takes the TensorBoard folder from the environment); they are set for the
    scope only. Afterwards the accelerator state is dropped (the process group stays) and the
    environment is as before."""
    import os

    from accelerate.state import AcceleratorState

    before = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        AcceleratorState._reset_state()  # keeps PartialState: the processes and their group


@contextlib.contextmanager
def gathered_for_sampling(accelerator, model: torch.nn.Module, reshard_after_forward: bool = True) -> Iterator[None]:
    """Whole parameters for a rollout's decoding, gathered once rather than in every forward pass.

    * FSDP2: every sharded module is unsharded and stays so until the rollout is decoded (then
      resharded, with ``reshard_after_forward`` restored), so decoding runs the submodules directly
      with no collective per token;
    * DeepSpeed ZeRO-3: ``deepspeed.zero.GatheredParameters`` with the engine's fetch hooks
      removed for the duration (TRL's ``unwrap_model_for_generation`` does the same);
    * otherwise (one process, DDP, ZeRO-1/2) the parameters are whole already: nothing happens."""
    from accelerate.utils import DistributedType

    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without FSDP2
        FSDPModule = ()
    sharded = [m for m in accelerator.unwrap_model(model).modules() if FSDPModule and isinstance(m, FSDPModule)]
    if sharded:
        # decoding calls submodules, not the root's forward, so the root's one-time setup (which
        # tells every sharded layer it is not the root) must run first; torch has no public call for it
        sharded[0]._get_fsdp_state()._lazy_init()
        for m in sharded:
            m.unshard()
            m.set_reshard_after_forward(False, recurse=False)
        try:
            yield
        finally:
            for m in sharded:
                m.reshard()
                m.set_reshard_after_forward(reshard_after_forward, recurse=False)
        return
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if accelerator.distributed_type == DistributedType.DEEPSPEED and ds is not None and ds.zero_stage == 3:
        import deepspeed
        from trl.models.utils import add_hooks, remove_hooks

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            remove_hooks(model)
            try:
                yield
            finally:
                add_hooks(model)
        return
    yield


def prepare_frozen(accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """A frozen model (reference policy, reward model) placed for the engine the trainable one runs under:
    sharded like it under DeepSpeed or FSDP (TRL's ``prepare_deepspeed`` / ``prepare_fsdp``), else moved to the device."""
    from accelerate.utils import DistributedType

    model = model.eval().requires_grad_(False)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        from trl.models.utils import prepare_deepspeed

        return prepare_deepspeed(model, accelerator)
    if accelerator.distributed_type == DistributedType.FSDP:
        from trl.models.utils import prepare_fsdp

        return prepare_fsdp(model, accelerator)
    return model.to(accelerator.device)


def configure_deepspeed(accelerator, micro_batch_size: int, accumulation_steps: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed settings that accelerate takes from a prepared dataloader, which PPO has not.

    DeepSpeed accumulates ``accumulation_steps`` micro-batches (it divides each loss by that number
    and steps at the boundary) and clips gradients itself. Untested: no DeepSpeed on the CI machine."""
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is None:
        return
    ds.deepspeed_config.update({"train_micro_batch_size_per_gpu": micro_batch_size, "gradient_accumulation_steps": accumulation_steps,
                                "gradient_clipping": max_grad_norm})
    ds.deepspeed_config["train_batch_size"] = micro_batch_size * accumulation_steps * accelerator.num_processes


def process_index() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def gather_objects(obj) -> list:
    """``obj`` of every process (picklable), in process order; ``[obj]`` on one process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class no_sync:
    """Skip DDP's gradient all-reduce for ``models`` unless ``sync`` (gradient accumulation)."""

    def __init__(self, acc, models, sync: bool):
        self.ctxs = [] if sync else [acc.no_sync(m) for m in models]

    def __enter__(self):
        for c in self.ctxs:
            c.__enter__()

    def __exit__(self, *a):
        for c in reversed(self.ctxs):
            c.__exit__(*a)
        return False
