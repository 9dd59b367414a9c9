"""The options of ``rlop run``: methods, seed, scale and the recipe (where each role's data comes from)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlop.config import ConfigError, StageConfig, opt
from rlop.models import precision as precision_
from rlop.rlp.variants import VARIANTS

ALL_METHODS = ("sft", "bon", "ppo", *VARIANTS)
DEFAULT_METHODS = ("sft", "bon", "ppo", "rlp-spg")
# stages that several seeds may share (--shared-stages), with the stages they read
SHAREABLE = {"sft": (), "collect": ("sft",), "rm": ("sft", "collect"), "heldout-sft": ("sft",), "outputs-sft": ("sft",),
             "bon": ("sft", "rm"), "ppo": ("sft", "rm"), "overopt-ppo": ("sft", "rm", "ppo"), "samples": ("ppo",), "heldout-ppo": ("ppo",),
             "outputs-ppo": ("ppo",)}


@dataclass
class RunConfig(StageConfig):
    preset: Literal["tiny", "cpu", "study", "overopt", "gpu"] = opt("cpu", "stage presets: cpu (SmolLM2-135M on 2 cores) | tiny (seconds, for tests) | "
                                                            "study (every method over seeds 0,1,2 on 2 cores, sharing SFT, D and the step-2 RM) | "
                                                            "overopt (PPO past gold's peak with its policy kept every 8 steps and scored on fixed "
                                                            "held-out prompts: the over-optimisation curve, 2 cores) | "
                                                   "gpu (one GPU: AlpacaFarm's stage shapes on the whole sandbox world; untested on GPU)")
    methods: str = opt(",".join(DEFAULT_METHODS), f"comma-separated methods from {', '.join(ALL_METHODS)}, or all")
    seed: int = opt(0, "run seed: collection, policy samples, SPG and evaluation sampling use it; SFT, reward models and PPO add it to their own seed")
    seeds: str = opt("", "several seeds, e.g. 0,1,2: one run per seed in OUT/seed-S (stages in shared_stages computed once, with the "
                         "first seed, in OUT/shared), then win-rates and paired differences bootstrapped over seeds in OUT/compare.md")
    shared_stages: str = opt("", f"with seeds: comma-separated stages computed once and shared by every seed, from {', '.join(SHAREABLE)} "
                                 "(each with the stages it reads); the seeds then differ only in the other stages")
    shared_seed: int = opt(-1, "with seeds: the seed the shared stages are computed with (-1: the first of seeds); adds replicates to a "
                               "study run earlier in the same OUT, e.g. --seeds 3 --shared-seed 0 after --seeds 0,1,2 (OUT/compare.md then "
                               "covers every finished seed in OUT)", ge=-1)
    sft_file: str = opt("sandbox:sft", "step 0: demonstrations (instruction/output, prompt/completion or messages records)")
    preference_prompts_file: str = opt("sandbox:preference", "step 1: instructions whose two policy samples the collect: annotator labels")
    preferences_file: str = opt("", "step 1 done already: a labelled preference file (AlpacaFarm or TRL records); collection is skipped")
    unlabeled_file: str = opt("sandbox:unlabeled", "PPO prompts and step-4 instructions (unlabeled)")
    heldout_file: str = opt("sandbox:val", "held-out instructions for the reward-model diagnostics (sandbox tasks; never step-4 prompts)")
    eval_file: str = opt("sandbox:eval", "eval instructions with reference outputs (AlpacaEval format)")
    eval_annotator: Literal["gold", "reward", "api"] = opt("gold", "who judges outputs against the references: gold (sandbox tasks) | reward | "
                                                           "api (options in the eval: section)")
    eval_reward_model: str = opt("", "reward model directory for --eval-annotator reward")
    sft_examples: int = opt(384, "demonstrations used for SFT (the first ones of sft_file)", ge=1)
    preference_prompts: int = opt(1000, "preference instructions labelled in step 1", ge=1)
    unlabeled_prompts: int = opt(64, "unlabeled instructions sampled for step 4", ge=1)
    samples_per_prompt: int = opt(10, "policy samples per unlabeled instruction (paper: 10)", ge=2)
    eval_prompts: int = opt(200, "eval instructions", ge=1)
    eval_samples: int = opt(2, "sampled outputs per eval instruction (scored by their mean)", ge=1)
    max_new_tokens: int = opt(48, "new tokens per response in every sampling stage", ge=1)
    judge: Literal["answer", "embedding", "nli"] = opt("embedding", "SPG equivalence judge: answer (sandbox) | embedding | nli")
    gamma: float = opt(0.5, "SPG confidence threshold (paper: 0.5; PPO's discount is ppo: gamma, which a top-level gamma never sets)", ge=0, le=1)
    bon_n: int = opt(4, "samples per best-of-n pick", ge=1)
    bon_temperature: float = opt(1.0, "best-of-n sampling temperature (AlpacaFarm: 1.0, top_p 0.9)", gt=0)
    heldout_prompts: int = opt(64, "val-split prompts on which the reward models are checked against the gold (never step-4 prompts; 0: off)", ge=0)
    heldout_samples: int = opt(4, "samples per held-out prompt from SFT and from the step-3 PPO policy", ge=2)
    matched_retraining: bool = opt(False, "step 4's reward models take the step-2 RM's seed (its split of D, head initialisation and order "
                                          "of D) and put their synthetic pairs at seeded slots of that order (reward: pair_order matched), so a "
                                          "retrained RM differs from rm only by what its variant adds")
    null_arm: bool = opt(False, "beside each retrained RM, a placebo under the same protocol: for SPG as many pairs from the same samples "
                                "with coin-flip labels (rm-spg-null); for UML lambda = 0 (rm itself under matched retraining); the "
                                "diagnostics pair each retrained RM with its null on the same gold-labelled pairs")
    step5: bool = opt(True, "run PPO again on each retrained RM (step 5); off: stop after step 4 and compare the reward models only")
    rlp_iterations: int = opt(1, "times steps 4-5 run for each RLP variant (1: Algorithm 1 as written); iteration k retrains the RM on "
                                 "samples (or, for OCRM, density ratios) of iteration k-1's policy, scoring SPG candidates with "
                                 "iteration k-1's RM, then runs PPO again; folders of iteration k end in -itk", ge=1)
    rlp_iterate_from: Literal["sft", "policy"] = opt("sft", "where PPO starts in iterations 2 and later: sft (RLP's step 5: from SFT, KL to "
                                                          "SFT) | policy (OCRM's loop: from iteration k-1's policy, KL to that policy)")
    precision: precision_.Precision = opt("auto", precision_.HELP + "; every stage's precision unless its section sets one")

    def check(self) -> None:
        methods = [m for m in self.methods.split(",") if m]
        unknown = sorted(set(methods) - set(ALL_METHODS) - {"all"})
        if unknown or not methods:
            raise ConfigError(f"--methods: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from {', '.join(ALL_METHODS)} or all")
        try:
            seeds = self.seed_list()
        except ValueError:
            raise ConfigError(f"--seeds {self.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds {self.seeds!r}: a seed is repeated")
        if self.rlp_iterations > 1 and not self.step5:
            raise ConfigError("--rlp-iterations above 1 needs step 5 (each iteration samples the PPO policy of the one before); "
                              "drop --step5 false or set --rlp-iterations 1")
        shared = self.shared_list()
        if self.shared_seed >= 0 and not shared:
            raise ConfigError("--shared-seed needs --shared-stages (it is the seed of the stages the seeds share)")
        if shared and not seeds:
            raise ConfigError("--shared-stages needs --seeds (stages are shared between the runs of several seeds)")
        bad = [s for s in shared if s not in SHAREABLE]
        if bad:
            raise ConfigError(f"--shared-stages: {', '.join(map(repr, bad))} cannot be shared; choose from {', '.join(SHAREABLE)}")
        for s in shared:
            missing = [d for d in SHAREABLE[s] if d not in shared and not (d == "collect" and self.preferences_file)]
            if missing:
                raise ConfigError(f"--shared-stages: {s} reads {', '.join(missing)}, which must then be shared too")

    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    def first_seed(self) -> int:
        """The seed the shared stages are computed with."""
        return self.shared_seed if self.shared_seed >= 0 else self.seed_list()[0]

    def shared_list(self) -> list[str]:
        return [s.strip() for s in self.shared_stages.split(",") if s.strip()]

    PRESETS: ClassVar[dict] = {
        "tiny": dict(preset="tiny", sft_examples=256, preference_prompts=64, unlabeled_prompts=16, samples_per_prompt=4,
                     eval_prompts=32, max_new_tokens=12, judge="answer", bon_n=4, methods=",".join(ALL_METHODS)),
        "cpu": dict(preset="cpu"),
        # every method over 3 seeds on 2 CPU cores: the seeds share SFT, D, the step-2 reward model and what depends only
        # on them (SFT's and best-of-n's eval outputs, SFT's held-out samples); each seed trains its own PPO, step 4 and step 5
        "study": dict(preset="study", methods="sft,bon,ppo,rlp-uml,rlp-spg", seeds="0,1,2", shared_stages="sft,collect,rm,heldout-sft,outputs-sft,bon",
                      preference_prompts=400, max_new_tokens=32),
        # the RLP gates. Gate A: SFT and PPO with 32-token responses and a smaller eval, the PPO stages keeping snapshots
        # (PPOConfig's overopt). Gate B adds --methods rlp-spg,rlp-uml --step5 false over seeds: step 4 on 640 unlabeled
        # instructions, retrained RMs matched to rm and each beside its null arm
        "overopt": dict(preset="overopt", methods="sft,ppo", max_new_tokens=32, eval_prompts=100, unlabeled_prompts=640,
                        matched_retraining=True, null_arm=True),
        "gpu": dict(preset="gpu", sft_examples=1000, preference_prompts=1000, unlabeled_prompts=2000, eval_prompts=200, eval_samples=4,
                    max_new_tokens=128, heldout_prompts=200, bon_n=16),
    }
