"""The ``rlop run`` command: build and check its config, claim and lock ``--out``, run the stages.

One seed: :class:`rlop.pipeline.run.Pipeline` in ``--out``. Several (``--seeds``): one run per
seed in ``OUT/seed-S``, the stages of ``--shared-stages`` once in ``OUT/shared``, then the
comparison over the seeds (:mod:`rlop.evaluation.compare`) in ``OUT``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rlop import outputs
from rlop.config import ConfigError, build_config, read_yaml
from rlop.distributed import barrier, is_main_process
from rlop.evaluation.compare import COMPARE_ENTRIES, compare, write_compare
from rlop.pipeline.recipe import check_sources
from rlop.pipeline.resolve import explicit_run_options
from rlop.pipeline.run import Pipeline
from rlop.pipeline.stages import ORDER, stage_order
from rlop.pipeline.run_config import ALL_METHODS, RunConfig
from rlop.utils import atomic_write_text

RUN_ENTRIES = ("run_config.json", "results.json", "diagnostics.json", "stages.json", "report.md", "winrate.png", "ppo_curves.png", "gold_vs_proxy.png", "overopt.png", "spg_confidence.png")
SEEDS_ENTRIES = ("run_config.json", "shared", *COMPARE_ENTRIES)


def _own_run_entries(out: Path, iterations: int) -> None:
    outputs.own(out, *RUN_ENTRIES, *stage_order(iterations), *(f"outputs-{m}" for m in ALL_METHODS))


def run_pipeline(preset: str | None, config_file: str | None, out: str | Path, overrides: dict | None = None, force: str | None = None,
                 overwrite: bool = False) -> dict:
    """``rlop run``: claim and lock ``out`` (see :mod:`rlop.outputs`), then run the stages (once per seed with ``--seeds``)."""
    cfg = build_config(RunConfig, preset or "cpu", config_file, overrides, section="run")
    if config_file:
        unused = [k for k in ("agreement", "sandbox") + (("eval",) if cfg.eval_annotator == "gold" else ()) if k in read_yaml(config_file)]
        if unused:
            raise ConfigError(f"{config_file}: rlop run does not use section(s) {', '.join(unused)}: eval: configures the reward or api eval "
                              "annotator (--eval-annotator; the default, gold, has no options); agreement: and sandbox: configure rlop agreement "
                              "and rlop sandbox export")
    if force and force not in ORDER:
        raise ConfigError(f"--force: unknown stage {force!r}; stages: {', '.join(ORDER)}")
    check_sources(cfg)  # before --out is claimed: a wrong path leaves nothing behind
    explicit = explicit_run_options(config_file, overrides)
    if cfg.seeds:
        return _run_seeds(cfg, config_file, out, force, overwrite, explicit | {"seed"})
    main = is_main_process()
    with outputs.claim(out, "run", overwrite, main=main) as out:
        if main:
            _own_run_entries(out, cfg.rlp_iterations)
        p = Pipeline(cfg, out, config_file, explicit=explicit)
        if force and main:
            p.force(force)
        barrier()
        return p.run()


def _run_seeds(cfg: RunConfig, config_file: str | None, out: str | Path, force: str | None, overwrite: bool, explicit: set[str]) -> dict:
    """``--seeds``: one run per seed in ``out/seed-S``, the shared stages in ``out/shared``, then the comparison in ``out``."""
    seeds, main = cfg.seed_list(), is_main_process()
    with outputs.claim(out, "run-seeds", overwrite, main=main) as out:
        if main:
            outputs.own(out, *SEEDS_ENTRIES, *(f"seed-{s}" for s in seeds))
            atomic_write_text(out / "run_config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
        with outputs.claim(out / "shared", "run-shared", overwrite, main=main) as shared_dir:
            if main:
                outputs.own(shared_dir, *cfg.shared_list())
            timings: dict = {}  # every seed's ETA learns from the stages run before it
            for i, seed in enumerate(seeds):
                seed_cfg = dataclasses.replace(cfg, seed=seed, seeds="", shared_stages="", shared_seed=-1)
                if main:
                    print(f"rlop run: seed {seed} ({i + 1} of {len(seeds)}) in {out / f'seed-{seed}'}", flush=True)
                with outputs.claim(out / f"seed-{seed}", "run", overwrite, main=main) as seed_dir:
                    if main:
                        _own_run_entries(seed_dir, cfg.rlp_iterations)
                    p = Pipeline(seed_cfg, seed_dir, config_file, shared=tuple(cfg.shared_list()), shared_dir=shared_dir, shared_seed=cfg.first_seed(),
                                 later_seeds=len(seeds) - 1 - i, timings=timings, explicit=explicit)
                    if force and main:
                        p.force(force, shared=i == 0)
                    barrier()
                    p.run()
        if not main:
            return {}
        if cfg.shared_seed >= 0:  # replicates added to an earlier study: compare them with the finished seeds already in OUT
            seeds = sorted(set(seeds) | {int(d.name[5:]) for d in out.glob("seed-*") if d.name[5:].isdigit() and (d / "results.json").exists()})
        res = compare([out / f"seed-{s}" for s in seeds], seed=cfg.seed)
        res["shared_stages"] = cfg.shared_list()
        write_compare(res, out)
        print(f"rlop run: {len(seeds)} seeds compared in {out / 'compare.md'}", flush=True)
        return res
