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
    negatives: Literal["roll", "all"] = opt("roll", "negatives of the mutual-information critic: roll (one other row of the batch "
                                             "per pair, Federici) | all (every other row of the batch)")
    beta_schedule: Literal["constant", "exponential"] = opt("constant", "weight beta of the MIB's symmetrized KL over the steps: constant "
                                                            "(beta_end throughout; the paper's equation, beta = 1) | exponential "
                                                            "(Federici et al.: beta_start for the first third, then log-linear to beta_end)")
    beta_start: float = opt(1e-3, "beta of the exponential schedule's first third (Federici et al.: 1e-3)", gt=0)
    beta_end: float = opt(1.0, "beta at the end of the schedule (and throughout with constant)", ge=0)
    skl: Literal["closed", "mc"] = opt("closed", "symmetrized KL of the MIB: closed form or mc (Monte Carlo)")
    critic_warmup_steps: int = opt(0, "before reward training, train the UML heads alone for this many steps on the view pairs' hidden "
                                      "states under the initial model, computed once (0: off)", ge=0)
    critic_warmup_batch: int = opt(128, "view pairs per step of the critic warm-up", ge=2)
    view_pairs_per_instruction: int = opt(1, "view pairs drawn per unlabeled instruction", ge=1)
    view_batch_size: int = opt(8, "view pairs per device per micro-batch", ge=2)
    cl_temperature: float = opt(0.1, "InfoNCE temperature of the cl ablation", gt=0)

    def check(self) -> None:
        if self.rep_loss != "none" and not self.views_file:
            raise ConfigError(f"--rep-loss {self.rep_loss} needs --views-file (policy samples from rlop sample)")
