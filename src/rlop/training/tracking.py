"""One experiment-tracking option for every training stage: ``report_to``.

PPO and reward training log through accelerate's trackers (``Accelerator(log_with=...)``);
SFT passes the same name to TRL's ``report_to``. Local tracker files (tensorboard) go to
``OUT/tracking``. The tracker's package (tensorboard, wandb, trackio) is the user's to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

ReportTo = Literal["none", "tensorboard", "wandb", "trackio"]
HELP = "experiment tracker: none | tensorboard | wandb | trackio (tensorboard files go to OUT/tracking)"
DIR = "tracking"


def accelerator_kwargs(report_to: str, out: str | Path) -> dict[str, Any]:
    """Keyword arguments for ``Accelerator`` that turn the tracker on (none: nothing)."""
    if report_to == "none":
        return {}
    return {"log_with": report_to, "project_dir": str(Path(out) / DIR)}


def trl_report_to(report_to: str) -> list[str]:
    return [] if report_to == "none" else [report_to]


def start(acc, report_to: str, stage: str, config: dict[str, Any]) -> None:
    if report_to != "none":
        flat = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
        acc.init_trackers(f"rlop-{stage}", config=flat)


def log(acc, report_to: str, stats: dict[str, Any], step: int) -> None:
    if report_to != "none":
        acc.log({k: v for k, v in stats.items() if isinstance(v, (int, float))}, step=step)


def finish(acc, report_to: str) -> None:
    """Close the trackers (not ``end_training``, which would also end a distributed job's process group)."""
    if report_to != "none":
        for tracker in acc.trackers:
            tracker.finish()
