"""How rlop run resolves a stage's config: defaults < preset < the run's recipe < YAML top level < section < wiring."""

import dataclasses
import typing

import pytest
import yaml

from rlop.config import ConfigError, build_config, choices_of, nested_configs
from rlop.pipeline.resolve import StageResolver, explicit_run_options
from rlop.pipeline.run_config import RunConfig


def resolver(tmp_path, yaml_data, flags=None):
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump(yaml_data))
    run = build_config(RunConfig, "tiny", f, flags, section="run")
    return StageResolver(run, f, explicit_run_options(f, flags), lambda stage: run.seed), run


def ppo_cfg(r, run):
    from rlop.training.ppo import PPOConfig

    return r(PPOConfig, "ppo", "ppo", wired={"policy": "p", "reward": "r"},
             recipe={"response_len": ("max_new_tokens", run.max_new_tokens), "prompts_file": ("unlabeled_file", run.unlabeled_file)})


def spg_cfg(r, run):
    from rlop.rlp.spg import SPGConfig

    return r(SPGConfig, "spg", "spg", wired={"samples": "s", "reward_model": "m"},
             recipe={"judge": ("judge", run.judge), "gamma": ("gamma", run.gamma), "seed": ("seed", run.seed)})


def test_a_section_value_beats_the_run_default_it_overlaps(tmp_path):
    """The issue's case: spg: gamma and ppo: response_len used to be replaced by the run's values without a word."""
    r, run = resolver(tmp_path, {"spg": {"gamma": 0.9}, "ppo": {"response_len": 10}})
    assert spg_cfg(r, run).gamma == 0.9 and ppo_cfg(r, run).response_len == 10
    r, run = resolver(tmp_path, {})
    assert spg_cfg(r, run).gamma == 0.5 and ppo_cfg(r, run).response_len == run.max_new_tokens == 12


def test_a_run_option_the_user_set_and_a_disagreeing_section_key_are_refused(tmp_path):
    for data, flags in [({"ppo": {"response_len": 10}}, {"max_new_tokens": 20}),
                        ({"ppo": {"response_len": 10}, "run": {"max_new_tokens": 20}}, None),
                        ({"ppo": {"response_len": 10}, "max_new_tokens": 20}, None),
                        ({"response_len": 10, "max_new_tokens": 20}, None)]:
        r, run = resolver(tmp_path, data, flags)
        with pytest.raises(ConfigError, match=r"response_len: 10 disagrees with the run option max_new_tokens \(--max-new-tokens\)"):
            ppo_cfg(r, run)
    r, run = resolver(tmp_path, {"ppo": {"response_len": 20}}, {"max_new_tokens": 20})  # agreeing is fine
    assert ppo_cfg(r, run).response_len == 20


def test_top_level_run_options_reach_stages_through_the_recipe(tmp_path):
    r, run = resolver(tmp_path, {"max_new_tokens": 20, "seed": 3})
    assert ppo_cfg(r, run).response_len == 20
    from rlop.training.best_of_n import BestOfNConfig

    bon = r(BestOfNConfig, "bon", "bon", wired={"policy": "p", "reward": "r"}, recipe={"seed": ("seed", run.seed + 1)})
    assert bon.seed == 4  # the run's seed + 1, not the top-level value applied again


def test_a_section_key_for_a_wired_field_is_refused(tmp_path):
    r, run = resolver(tmp_path, {"ppo": {"reward": "elsewhere"}})
    with pytest.raises(ConfigError, match="section 'ppo:' sets reward, which rlop run sets itself"):
        ppo_cfg(r, run)


def changed(cls, f):
    """A valid value of field ``f`` other than its default."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    meta, tp = f.metadata or {}, typing.get_type_hints(cls)[f.name]
    if choices_of(cls, f):
        return next(c for c in choices_of(cls, f) if c != default)
    if tp is bool:
        return not default
    if tp is int:
        return default + 1 if meta.get("le") is None or default + 1 <= meta["le"] else default - 1
    if tp is float:
        hi = meta.get("le")
        return (default + hi) / 2 if hi is not None and default != hi else (default / 2 if default and hi is not None else default + 0.5)
    if tp is str:
        return "changed"
    return None


def stage_sections():
    """(section, class, stage, wired fields) of every stage config rlop run builds."""
    from rlop.models.sampling import SampleConfig
    from rlop.rlp.spg import SPGConfig
    from rlop.sandbox.collect import CollectConfig
    from rlop.training.best_of_n import BestOfNConfig
    from rlop.training.ppo import PPOConfig
    from rlop.training.reward_trainer import RewardConfig
    from rlop.training.sft import SFTConfig

    return [("sft", SFTConfig, set()), ("collect", CollectConfig, {"policy"}), ("reward", RewardConfig, {"model", "train_file"}),
            ("ppo", PPOConfig, {"policy", "reward"}), ("sample", SampleConfig, {"policy"}), ("spg", SPGConfig, {"samples", "reward_model"}),
            ("bon", BestOfNConfig, {"policy", "reward"})]


@pytest.mark.parametrize("section,cls,wired", stage_sections(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_field_set_in_its_section_is_the_value_the_stage_gets(tmp_path, section, cls, wired):
    """Table-driven: each field of the section's class (nested ones included), one at a time."""
    fields = [(cls, f) for f in dataclasses.fields(cls) if f.name not in nested_configs(cls)]
    fields += [(sub, f) for sub in nested_configs(cls).values() for f in dataclasses.fields(sub)]
    checked = 0
    for owner, f in fields:
        if f.name in wired:
            continue
        value = changed(owner, f)
        if value is None:
            continue
        r, run = resolver(tmp_path, {section: {f.name: value}})
        try:
            cfg = r(cls, section, section, wired={k: "w" for k in wired}, recipe={"seed": ("seed", 0)} if section in ("collect", "sample", "spg", "bon") else {})
        except ConfigError as e:  # a cross-field rule of the class (e.g. rlaif needs a policy): the value did reach it
            assert f.name in str(e) or "--" in str(e), (f.name, e)
            continue
        got = getattr(cfg, f.name) if owner is cls else getattr(getattr(cfg, next(n for n, c in nested_configs(cls).items() if c is owner)), f.name)
        assert got == value, (section, f.name)
        checked += 1
    assert checked >= len(fields) // 2


def test_precision_from_the_run_option_or_a_section_reaches_the_stage_and_its_cache_key(tmp_path):
    from rlop.pipeline.run import _key

    r, run = resolver(tmp_path, {}, {"precision": "fp32"})
    assert ppo_cfg(r, run).precision == "fp32" and spg_cfg(r, run).precision == "fp32"
    r, run = resolver(tmp_path, {"ppo": {"precision": "bf16"}})
    assert ppo_cfg(r, run).precision == "bf16"
    r, run = resolver(tmp_path, {"ppo": {"precision": "bf16"}}, {"precision": "fp32"})
    with pytest.raises(ConfigError, match="precision: 'bf16' disagrees with the run option precision"):
        ppo_cfg(r, run)
    r, run = resolver(tmp_path, {})
    assert ppo_cfg(r, run).precision in ("fp32", "bf16")  # auto is resolved once, where the config is built
    keys = {p: _key("ppo", ppo_cfg(*resolver(tmp_path, {}, {"precision": p}))) for p in ("fp32", "bf16")}
    assert keys["fp32"] != keys["bf16"]


def test_a_top_level_run_option_reaches_only_the_stage_its_recipe_feeds(tmp_path):
    """``gamma`` is the run's SPG threshold and also the name of PPO's GAE discount: a top-level
    ``gamma:`` must set the first only (PPO's discount goes under ``ppo:``)."""
    r, run = resolver(tmp_path, {"gamma": 0.7})
    assert spg_cfg(r, run).gamma == 0.7
    assert ppo_cfg(r, run).gamma == 1.0
    r, run = resolver(tmp_path, {"gamma": 0.7, "ppo": {"gamma": 0.95}})
    assert spg_cfg(r, run).gamma == 0.7 and ppo_cfg(r, run).gamma == 0.95
