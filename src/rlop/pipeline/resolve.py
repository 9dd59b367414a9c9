"""How ``rlop run`` builds each stage's config: one road for every value.

Lowest to highest:

1. the stage's field defaults;
2. the stage's preset (``--preset``; ``study`` falls back to ``cpu`` where a stage has no entry);
3. the **recipe**: what the run's own options give the stage (``max_new_tokens`` becomes PPO's
   ``response_len``, ``unlabeled_file`` its ``prompts_file``, ``gamma`` SPG's threshold ...);
4. the YAML file's top level (keys that are ``rlop run`` options are the run's, and reach a stage
   through the recipe only);
5. the stage's YAML section (``sft:``, ``ppo:``, ``spg:`` ...);
6. **wiring**: the folders one stage hands the next (the SFT model, the reward model, the
   samples). A section key for a wired field is refused; it would be ignored.

A run option the user gave (a flag, the ``run:`` section or a top-level key) and a YAML key
that sets the same stage field to another value are refused with both named: neither silently
wins. A run option left at its preset or default gives way to the section.

``precision`` is a field of every stage that computes; the run's ``--precision`` is its recipe value,
and ``auto`` is resolved here (to fp32 or bf16), so ``stage.json`` and the cache key record what
the stage computed in.

The run's ``--seed S`` reaches every stage: stages whose seed the recipe sets (collection,
samples, SPG, best-of-n) get it there; the others (SFT, reward models, PPO) run with their own
seed plus S, so ``--seed 0`` keeps each stage's documented seed and another S changes them all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from rlop.config import ConfigError, build_config, coerce, yaml_values
from rlop.models.precision import resolve as resolve_precision
from rlop.pipeline.run_config import RunConfig

# a recipe entry: stage field -> (the run option it comes from, or None for a fixed run default; its value)
Recipe = dict[str, tuple[str | None, Any]]


def explicit_run_options(config_file: str | Path | None, overrides: dict[str, Any] | None) -> set[str]:
    """The ``rlop run`` options the user set: flags, the ``run:`` section and top-level YAML keys."""
    given = {k for k, v in (overrides or {}).items() if v is not None}
    if config_file:
        top, sec = yaml_values(RunConfig, config_file, "run")
        given |= set(top) | set(sec)
    return given


class StageResolver:
    """Stage configs for one run (one seed): see the module docstring for the order."""

    def __init__(self, run: RunConfig, config_file: str | Path | None, explicit: set[str], seed_of: Callable[[str | None], int]):
        self.run, self.config_file, self.explicit, self.seed_of = run, config_file, set(explicit), seed_of
        self._run_options = {f.name for f in dataclasses.fields(RunConfig)}

    def __call__(self, cls, section: str, stage: str | None = None, recipe: Recipe | None = None,
                 wired: dict[str, Any] | None = None, shared_section: bool = False):
        """The config of ``stage`` (``cls``, YAML section ``section``).

        ``recipe``: stage field -> (run option or None, value); ``wired``: stage field -> value
        set by the pipeline. ``shared_section``: the section mainly configures another stage (the
        held-out samples read ``sample:``), so its keys for this stage's wired fields are not refused."""
        recipe, wired = dict(recipe or {}), dict(wired or {})
        if any(f.name == "precision" for f in dataclasses.fields(cls)):
            recipe.setdefault("precision", ("precision", self.run.precision))
        top, sec = yaml_values(cls, self.config_file, section) if self.config_file else ({}, {})
        where = f"{self.config_file}: section '{section}:'"
        if not shared_section:
            bad = sorted(k for k in sec if k in wired)
            if bad:
                raise ConfigError(f"{where} sets {', '.join(bad)}, which rlop run sets itself (the output of an earlier stage) "
                                  f"for stage {stage or section}; remove {'it' if len(bad) == 1 else 'them'}")
        for field, (run_opt, value) in recipe.items():
            if run_opt is None or run_opt not in self.explicit:
                continue
            for place, vals in ((where, sec), (f"{self.config_file}: top-level key", top)):
                if field in vals and not (vals is top and field in self._run_options):
                    given = coerce(cls, field, vals[field], place)
                    if given != value:
                        raise ConfigError(f"{place} {field}: {vals[field]!r} disagrees with the run option {run_opt} "
                                          f"(--{run_opt.replace('_', '-')}), which sets {field} to {value!r} for stage {stage or section}; "
                                          "set it in one place")
        pinned = self._run_options  # top-level keys that are the run's options stay the run's (a top-level gamma is SPG's, never PPO's discount)
        cfg = build_config(cls, self.run.preset, self.config_file, overrides=wired, section=section,
                           recipe={k: v for k, (_, v) in recipe.items()}, pinned=pinned)
        if getattr(cfg, "precision", None) == "auto":  # resolved once: stage.json and the cache key say what it computed in
            cfg = dataclasses.replace(cfg, precision=resolve_precision("auto"))
        run_seed = self.seed_of(stage)
        if "seed" not in recipe and "seed" not in wired and run_seed and hasattr(cfg, "seed"):
            cfg = dataclasses.replace(cfg, seed=cfg.seed + run_seed)
        return cfg

    def seeded(self, stage: str | None, offset: int = 0) -> tuple[str, int]:
        """A recipe entry for a stage whose seed is the run's (plus ``offset``)."""
        return ("seed", self.seed_of(stage) + offset)

