"""Run by tests/test_distributed.py under torchrun (2 processes) and plain python (1 process)."""

import json
import sys

import torch

from rlop.config import build_config
from rlop.rlp.uml import build_rep_loss
from rlop.training.reward_trainer import RewardConfig, RewardTrainer, load_reward_data

out, per_device, rep, views = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cfg = build_config(RewardConfig, "tiny", overrides={"per_device_batch_size": per_device, "max_train_pairs": 32, "rep_loss": rep,
                                                    "views_file": views if rep != "none" else "", "view_batch_size": per_device, "head_hidden": 32})
train, ev, v, _, n_extra = load_reward_data(cfg)
trainer = RewardTrainer(cfg, aux=(lambda h: build_rep_loss(cfg, h)) if rep != "none" else None)
result = trainer.train(train, ev, v, n_extra=n_extra)
if trainer.accelerator.is_main_process:
    rm = trainer.accelerator.unwrap_model(trainer.module).rm
    flat = torch.cat([p.detach().flatten() for p in rm.parameters()])
    json.dump({"losses": [h["loss"] for h in trainer.history], "params": flat[:: max(1, len(flat) // 5000)].tolist(),
               "processes": trainer.accelerator.num_processes, **result}, open(out, "w"))
trainer.accelerator.wait_for_everyone()  # both ranks reach the teardown together (gloo aborts otherwise)
trainer.accelerator.end_training()  # tear the process group down before exit
