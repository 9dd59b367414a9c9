"""Options of RLP-UML's representation loss (the multi-view information bottleneck and its
ablations), nested in :class:`rlop.training.reward_trainer.RewardConfig` as ``uml``.

Its fields keep their flat names on the command line (``--rep-loss mib``) and in YAML
(``reward: {rep_loss: mib}`` or ``reward: {uml: {rep_loss: mib}}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlop.config import ConfigError, StageConfig, opt

REP_LOSSES = ("none", "mib", "infomax", "mvi", "cl")


@dataclass
class UMLConfig(StageConfig):
    views_file: str = opt("", "policy samples JSONL (from rlop sample) for view pairs (RLP-UML)")
    rep_loss: Literal["none", "mib", "infomax", "mvi", "cl"] = opt("none", "representation loss on view pairs: mib (RLP-UML), its ablations infomax, mvi, cl, or none")
    rep_lambda: float = opt(0.5, "weight lambda of the representation loss", ge=0)
    latent_dim: int = opt(64, "latent size of the UML encoders", ge=1)
    head_hidden: int = opt(1024, "hidden width of the UML encoders and critic", ge=1)
    head_lr: float = opt(1e-4, "learning rate of the UML heads", gt=0)
    negatives: Literal["roll", "all"] = opt("roll", "JS critic negatives: roll (one rolled negative, Federici) | all (all off-diagonal pairs)")
    skl: Literal["closed", "mc"] = opt("closed", "symmetrized KL of the MIB: closed form or mc (Monte Carlo)")
    view_pairs_per_instruction: int = opt(1, "view pairs drawn per unlabeled instruction", ge=1)
    view_batch_size: int = opt(8, "view pairs per device per micro-batch", ge=2)
    cl_temperature: float = opt(0.1, "InfoNCE temperature of the cl ablation", gt=0)

    def check(self) -> None:
        if self.rep_loss != "none" and not self.views_file:
            raise ConfigError(f"--rep-loss {self.rep_loss} needs --views-file (policy samples from rlop sample)")
