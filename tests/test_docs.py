"""The README stays true: its recipe parses as rlop run reads it, and every document it links exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_recipe_parses_into_the_stage_configs(tmp_path):
    from rlop.config import build_config
    from rlop.evaluation.winrate import EvalConfig
    from rlop.pipeline.run_config import RunConfig
    from rlop.training.sft import SFTConfig

    text = (ROOT / "README.md").read_text()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    run = build_config(RunConfig, None, str(recipe), {}, section="run")
    assert run.preferences_file == "data/prefs.jsonl" and run.eval_annotator == "api"
    assert build_config(SFTConfig, None, str(recipe), {}, section="sft").model.startswith("meta-llama/")
    assert build_config(EvalConfig, None, str(recipe), {}, section="eval").api.api_base.startswith("https://")


def test_readme_links_exist():
    text = (ROOT / "README.md").read_text()
    links = [l for l in re.findall(r"\]\(([^)#]+)", text) if not l.startswith("http")]
    assert links and all((ROOT / l).exists() for l in links), [l for l in links if not (ROOT / l).exists()]


def _doc_commands() -> list[tuple[str, str]]:
    """Every ``rlop ...`` command in a fenced bash block of the README and docs/, continuations joined,
    shell variables set in the block substituted; (document, command)."""
    import shlex

    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", doc.read_text(), re.S):
            env = {}
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if m := re.fullmatch(r"([A-Z_]+)=(\S+)", line):
                    env[m.group(1)] = m.group(2)
                    continue
                for part in re.split(r"\s*(?:&&|;|\|)\s*", line):
                    part = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: env.get(m.group(1), m.group(0)), part.strip())
                    if part.startswith("rlop "):
                        found.append((doc.name, " ".join(shlex.split(part))))
    return found


def test_docs_commands_parse_and_their_configs_build():
    """Each documented command is accepted by the parser and its options build the stage's config (a
    misspelt flag, a removed option or a value out of range fails here, not for a reader)."""
    import shlex

    from rlop.cli import COMMANDS, _config, build_parser, overrides_from_args
    from rlop.config import build_config
    from rlop.pipeline.run_config import RunConfig

    commands = _doc_commands()
    assert len(commands) >= 15 and {c.split()[1] for _, c in commands} >= {"run", "sft", "reward", "ppo", "spg", "ocrm", "overopt"}
    parser = build_parser()
    for doc, command in commands:
        argv = shlex.split(command)[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"{doc}: `{command}` does not parse") from e
        if getattr(args, "config", None) and not Path(args.config).exists():
            continue  # a recipe of the reader's: its keys are checked by the recipe test above
        if args.command == "run":
            build_config(RunConfig, args.preset, None, overrides_from_args(args), section="run")
        elif COMMANDS[args.command].config:
            _config(args.command, args)


def test_every_measurement_section_says_when_where_and_how():
    """Each section of docs/measurements.md opens with a Measured line naming a date, the hardware, the
    precision, a commit and a command or preset, so no table stands without its conditions."""
    text = (ROOT / "docs" / "measurements.md").read_text()
    sections = re.split(r"\n## ", text)[1:]
    assert len(sections) >= 10
    for sec in sections:
        title, body = sec.split("\n", 1)
        line = next((l for l in body.splitlines() if l.startswith("> **Measured**")), "")
        assert re.search(r"20\d\d-\d\d-\d\d", line), f"{title}: no dated Measured line"
        assert "core" in line and re.search(r"float32|bf16", line), f"{title}: hardware or precision missing"
        assert re.search(r"\b[0-9a-f]{7}\b", line), f"{title}: no commit"
        assert "`" in line or "preset" in line, f"{title}: no command or preset"
