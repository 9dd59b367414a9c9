"""Config dataclasses: precedence, validation of every field before any model loads, YAML strictness."""

import dataclasses
import json

import pytest

from rlop.config import SECTIONS, ConfigError, build_config, choices_of, section_class

CLASSES = {name: section_class(name) for name in SECTIONS}
NESTED = {"uml": section_class("reward").__dataclass_fields__["uml"].default_factory}  # configs nested in a stage's config


@pytest.mark.parametrize("section", list(SECTIONS))
def test_defaults_and_presets_are_valid_and_every_field_documented(section):
    cls = CLASSES[section]
    cls()
    for preset in cls.PRESETS:
        build_config(cls, preset)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


@pytest.mark.parametrize("section", list(SECTIONS) + list(NESTED))
def test_every_bound_and_choice_is_enforced(section):
    cls = {**CLASSES, **NESTED}[section]
    for f in dataclasses.fields(cls):
        m = f.metadata
        bad = []
        if m.get("ge") is not None:
            bad.append(m["ge"] - 1)
        if m.get("gt") is not None:
            bad.append(m["gt"])
        if m.get("le") is not None:
            bad.append(m["le"] + 1)
        if choices_of(cls, f):
            bad.append("no-such-choice")
        if f.type in ("int", "float"):
            bad.append("text")
        for value in bad:
            with pytest.raises(ConfigError, match=f.name):
                cls(**{f.name: value})


def test_precedence_defaults_preset_yaml_section_flags(tmp_path):
    from rlop.training.ppo import PPOConfig

    assert build_config(PPOConfig).steps == 40  # default
    assert build_config(PPOConfig, "cpu").steps == 30  # preset
    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\nkl_coef: 0.5\nppo:\n  steps: 9\nsft:\n  epochs: 2\n")
    cfg = build_config(PPOConfig, "cpu", f, section="ppo")
    assert (cfg.steps, cfg.kl_coef) == (9, 0.5)  # section over top level over preset
    assert build_config(PPOConfig, "cpu", f, {"steps": "11"}, section="ppo").steps == 11  # flags last


def test_top_level_keys_of_other_stages_are_allowed_in_a_shared_file(tmp_path):
    from rlop.training.sft import SFTConfig

    f = tmp_path / "c.yaml"
    f.write_text("kl_coef: 0.1\nepochs: 2\n")  # kl_coef belongs to ppo
    assert build_config(SFTConfig, None, f, section="sft").epochs == 2.0


@pytest.mark.parametrize("text,message", [
    ("- a\n- b\n", "expected a mapping"),
    ("ppo: [1, 2]\n", "section 'ppo:' must be a mapping"),
    ("ppo:\n  stepz: 3\n", "did you mean steps"),
    ("reward:\n  learning_rate: fast\n", "expects float"),
    ("sft:\n  trust_remote_code: maybe\n", "expects bool"),
    ("sft:\n  epochs: [1]\n", "expects float"),
    ("sft: {epochs: 1\n", "invalid YAML"),
])
def test_bad_yaml_is_rejected_with_file_and_key(tmp_path, text, message):
    from rlop.training.sft import SFTConfig

    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        build_config(SFTConfig, None, f, section="sft")


def test_a_renamed_option_names_its_new_name(tmp_path):
    from rlop.pipeline.run_config import RunConfig

    f = tmp_path / "old.yaml"
    f.write_text("run:\n  sandbox_sft: 16\n")
    with pytest.raises(ConfigError, match="unknown option 'sandbox_sft'.*renamed to sft_examples"):
        build_config(RunConfig, None, f, section="run")
    f.write_text("run:\n  sft_examples: 16\n")
    assert build_config(RunConfig, None, f, section="run").sft_examples == 16


def test_cross_field_rules():
    from rlop.training.ppo import PPOConfig
    from rlop.training.reward_trainer import RewardConfig

    with pytest.raises(ConfigError, match="needs --views-file"):
        build_config(RewardConfig, overrides={"rep_loss": "mib"})
    with pytest.raises(ConfigError, match="must not exceed --rollout-batch-size"):
        PPOConfig(rollout_batch_size=8, step_batch_size=16)
    with pytest.raises(ConfigError, match="unknown 'x'"):
        section_class("run")(methods="ppo,x")
    with pytest.raises(ConfigError, match="--shared-seed needs --shared-stages"):
        section_class("run")(seeds="2", shared_seed=0)
    assert section_class("run")(seeds="2,3", shared_stages="sft", shared_seed=0).first_seed() == 0
    assert section_class("run")(seeds="2,3", shared_stages="sft").first_seed() == 2


@pytest.mark.parametrize("section", list(SECTIONS))
def test_precedence_for_every_stage(tmp_path, section):
    """defaults < preset < YAML top level < YAML section < flags, for every stage's config."""
    cls = CLASSES[section]
    # seed where the stage has one (OCRM is deterministic: its batch size then)
    key = "seed" if "seed" in {fl.name for fl in dataclasses.fields(cls)} else "batch_size"
    default = getattr(cls(), key)
    f = tmp_path / "c.yaml"
    f.write_text(f"{key}: 101\n{section}:\n  {key}: 202\n")
    assert getattr(build_config(cls), key) == default
    assert getattr(build_config(cls, None, f, section=section), key) == 202
    assert getattr(build_config(cls, None, f, {key: "303"}, section=section), key) == 303
    (tmp_path / "top.yaml").write_text(f"{key}: 101\n")
    assert getattr(build_config(cls, None, tmp_path / "top.yaml", section=section), key) == 101
    preset = next(iter(cls.PRESETS.items()), None)
    if preset and preset[1]:
        name, values = preset
        key, value = next(iter(values.items()))
        assert getattr(build_config(cls, name), key) == value
        (tmp_path / "over.yaml").write_text(f"{section}:\n  {key}: {json.dumps(getattr(cls(), key))}\n")
        assert getattr(build_config(cls, name, tmp_path / "over.yaml", section=section), key) == getattr(cls(), key)


def test_uml_options_are_flat_flags_and_yaml_keys_or_a_nested_section(tmp_path):
    from rlop.training.reward_trainer import RewardConfig

    f = tmp_path / "c.yaml"
    f.write_text("reward:\n  head_hidden: 7\n  uml:\n    rep_lambda: 2\n")
    cfg = build_config(RewardConfig, "tiny", f, {"negatives": "all"}, section="reward")
    assert (cfg.uml.head_hidden, cfg.uml.rep_lambda, cfg.uml.negatives, cfg.uml.view_batch_size) == (7, 2.0, "all", 4)  # 4 from the preset
    f.write_text("reward:\n  uml:\n    rep_lamda: 2\n")
    with pytest.raises(ConfigError, match="did you mean rep_lambda"):
        build_config(RewardConfig, None, f, section="reward")


def test_help_prints_each_presets_value_and_the_range(capsys):
    from rlop.cli import main

    with pytest.raises(SystemExit):
        main(["ppo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS PPO steps (one rollout batch each) (default: 40; presets: cpu 30, overopt 64, study 10, tiny 6; range: >= 1)" in text
    assert "gpu: AlpacaFarm's stage shapes" in text and "default: none, the field defaults below" in text
    assert "range: >= 0, <= 1" in text  # gamma, lam, clip ranges


def test_a_paper_scale_ppo_on_a_cpu_warns_with_its_time_before_any_model_loads(tmp_path, monkeypatch, capsys):
    import rlop.training.ppo as ppo

    calls = []
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(ppo, "run_ppo", lambda cfg, out, resume=False: calls.append(capsys.readouterr().err) or {})
    from rlop.cli import main

    assert main(["ppo", "--out", str(tmp_path / "a"), "--reward", "gold"]) == 0
    warned = calls[0]  # what stderr held when training would have started
    assert "rlop: warning: no GPU; this PPO run (40 steps x 512 rollouts x 300 tokens, the paper-scale defaults: no --preset given)" in warned
    assert "is about 32h46m on 2 CPU cores" in warned and "--preset cpu is about 7m22s" in warned  # 0.0192 s per token x 40 x 512 x 300
    assert main(["ppo", "--preset", "cpu", "--out", str(tmp_path / "b"), "--reward", "gold"]) == 0
    assert "warning" not in calls[1]
