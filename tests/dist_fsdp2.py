"""Run by tests/test_distributed_ppo.py: rlop's PPO loop on an FSDP2-sharded actor-critic (torch
``fully_shard`` over gloo), or unsharded on one process.

accelerate applies FSDP only on accelerators, so on CPU this script shards the prepared
actor-critic itself, the way accelerate's FSDP2 path does (each decoder layer, then the root);
everything else is rlop's own loop: sampling, scoring, gathering, optimisation.
argv: OUT_JSON SFT_DIR"""

import json
import sys

import torch
import torch.distributed as dist

from rlop.config import build_config
from rlop.data.formatting import format_prompt
from rlop.models.generation import SamplingConfig
from rlop.reward_functions import CallableReward
from rlop.distributed import gathered_for_sampling
from rlop.training.ppo import PPOConfig, PPOTrainer
from tests import helpers_rewards

out, sft = sys.argv[1], sys.argv[2]
cfg = build_config(PPOConfig, "tiny", overrides={"policy": sft, "steps": 1, "save_steps": 100, "generation_batch_size": 16, "top_k": 1,
                                                 "noptepochs": 1, "lr_horizon": "steps", "warmup_steps": 0})
tr = PPOTrainer(cfg, reward=CallableReward(helpers_rewards.letter_e), out=f"{out}.ppo")
acc = tr.accelerator
sharded = acc.num_processes > 1
if sharded:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    ac = tr.actor_critic  # unwrapped from DDP: shard the plain module instead
    mesh = init_device_mesh("cpu", (acc.num_processes,))
    for layer in [*ac.policy.model.layers, *ac.value.model.layers]:
        fully_shard(layer, mesh=mesh)
    fully_shard(ac, mesh=mesh)
    lr = tr.optimizer.param_groups[0]["lr"]
    tr.model = ac
    tr.optimizer = torch.optim.AdamW([p for p in ac.parameters() if p.requires_grad], lr=lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    from transformers import get_scheduler

    tr.scheduler = get_scheduler("linear", tr.optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=tr.lr_horizon())
    tr.save_checkpoint = lambda: None  # accelerate's sharded save_state runs only where it applies FSDP itself (GPUs)

rows = []
tr.train(on_step=rows.append)

# the whole state dict, gathered from the shards
if sharded:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(tr.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
else:
    state = tr.actor_critic.state_dict()

# sampling where one process's rows all stop at the first token and the other's run to the end
policy = tr.actor_critic.policy
vocab = policy.config.vocab_size
policy.generation_config.eos_token_id = list(range(vocab)) if acc.process_index == 0 else [tr.tokenizer.eos_token_id]
prompts = [format_prompt(tr.tokenizer, e.instruction, e.input) for e in tr.prompts[:4]]
with gathered_for_sampling(acc, tr.model):  # as PPOTrainer.rollout does
    gen = tr.backend.generate(prompts, SamplingConfig(max_new_tokens=8, top_k=1, batch_size=4), [1, 2, 3, 4])
lengths = gen.response_mask.sum(1).tolist()
if acc.is_main_process:
    flat = {k: v.detach().float().flatten()[:: max(1, v.numel() // 500)].tolist() for k, v in state.items()}
    json.dump({"metrics": rows, "params": flat, "processes": acc.num_processes, "lengths_rank0": lengths}, open(out, "w"))
obj = [None] * acc.num_processes if sharded else None
if sharded:
    dist.all_gather_object(obj, lengths)
    json.dump(obj, open(out + ".lengths", "w")) if acc.is_main_process else None
acc.wait_for_everyone()
acc.end_training()
