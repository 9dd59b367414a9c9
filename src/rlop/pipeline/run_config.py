"""The options of ``rlop run``: methods, seed, scale and the recipe (where each role's data comes from)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlop.config import ConfigError, StageConfig, opt
from rlop.rlp.variants import VARIANTS

ALL_METHODS = ("sft", "bon", "ppo", *VARIANTS)
DEFAULT_METHODS = ("sft", "bon", "ppo", "rlp-spg")


@dataclass
class RunConfig(StageConfig):
    preset: Literal["tiny", "cpu", "gpu"] = opt("cpu", "stage presets: cpu (SmolLM2-135M on 2 cores) | tiny (seconds, for tests) | "
                                                   "gpu (one GPU: AlpacaFarm's stage shapes on the whole sandbox world; untested on GPU)")
    methods: str = opt(",".join(DEFAULT_METHODS), f"comma-separated methods from {', '.join(ALL_METHODS)}, or all")
    seed: int = opt(0, "run seed: collection, policy samples, SPG and evaluation sampling use it; SFT, reward models and PPO add it to their own seed")
    sft_file: str = opt("sandbox:sft", "step 0: demonstrations (instruction/output, prompt/completion or messages records)")
    preference_prompts_file: str = opt("sandbox:preference", "step 1: instructions whose two policy samples the collect: annotator labels")
    preferences_file: str = opt("", "step 1 done already: a labelled preference file (AlpacaFarm or TRL records); collection is skipped")
    unlabeled_file: str = opt("sandbox:unlabeled", "PPO prompts and step-4 instructions (unlabeled)")
    heldout_file: str = opt("sandbox:val", "held-out instructions for the reward-model diagnostics (sandbox tasks; never step-4 prompts)")
    eval_file: str = opt("sandbox:eval", "eval instructions with reference outputs (AlpacaEval format)")
    eval_annotator: Literal["gold", "reward", "api"] = opt("gold", "who judges outputs against the references: gold (sandbox tasks) | reward | "
                                                           "api (options in the eval: section)")
    eval_reward_model: str = opt("", "reward model directory for --eval-annotator reward")
    sandbox_sft: int = opt(384, "demonstrations used for SFT (the first ones of sft_file)", ge=1)
    preference_prompts: int = opt(1000, "preference instructions labelled in step 1", ge=1)
    unlabeled_prompts: int = opt(64, "unlabeled instructions sampled for step 4", ge=1)
    samples_per_prompt: int = opt(10, "policy samples per unlabeled instruction (paper: 10)", ge=2)
    eval_prompts: int = opt(200, "eval instructions", ge=1)
    eval_samples: int = opt(2, "sampled outputs per eval instruction (scored by their mean)", ge=1)
    max_new_tokens: int = opt(48, "new tokens per response in every sampling stage", ge=1)
    judge: Literal["answer", "embedding", "nli"] = opt("embedding", "SPG equivalence judge: answer (sandbox) | embedding | nli")
    gamma: float = opt(0.5, "SPG confidence threshold (paper: 0.5)", ge=0, le=1)
    bon_n: int = opt(4, "samples per best-of-n pick", ge=1)
    bon_temperature: float = opt(1.0, "best-of-n sampling temperature (AlpacaFarm: 1.0, top_p 0.9)", gt=0)
    heldout_prompts: int = opt(64, "val-split prompts on which the reward models are checked against the gold (never step-4 prompts; 0: off)", ge=0)
    heldout_samples: int = opt(4, "samples per held-out prompt from SFT and from the step-3 PPO policy", ge=2)

    def check(self) -> None:
        methods = [m for m in self.methods.split(",") if m]
        unknown = sorted(set(methods) - set(ALL_METHODS) - {"all"})
        if unknown or not methods:
            raise ConfigError(f"--methods: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from {', '.join(ALL_METHODS)} or all")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(preset="tiny", sandbox_sft=256, preference_prompts=64, unlabeled_prompts=16, samples_per_prompt=4,
                     eval_prompts=32, max_new_tokens=12, judge="answer", bon_n=4, methods=",".join(ALL_METHODS)),
        "cpu": dict(preset="cpu"),
        "gpu": dict(preset="gpu", sandbox_sft=1000, preference_prompts=1000, unlabeled_prompts=2000, eval_prompts=200, eval_samples=4,
                    max_new_tokens=128, heldout_prompts=200, bon_n=16),
    }
