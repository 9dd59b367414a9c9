"""PPO checkpoints and kept snapshots: everything needed to continue a run, written through ``accelerate.save_state``
(so that every process saves its shard under ZeRO-3 or FSDP) into a partial folder that is renamed
when complete; ``latest`` names the newest. Used by :class:`rlop.training.ppo.PPOTrainer`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rlop.config import to_dict


class Counters:
    """The trainer's own state in a checkpoint (beside model, optimizer and scheduler)."""

    def __init__(self, trainer: "Checkpoints"):
        self.trainer = trainer

    def state_dict(self) -> dict:
        return {"step": self.trainer.step, "kl_coef": self.trainer.kl_ctl.value}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.step, self.trainer.kl_ctl.value = int(state["step"]), float(state["kl_coef"])


class Checkpoints:
    """Mixin of the trainer: needs ``accelerator``, ``cfg``, ``out``, ``step`` and ``metrics``."""

    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> None:
        """Model, optimizer, scheduler and counters through ``accelerate.save_state`` (every process
        takes part: under ZeRO-3 or FSDP each holds a shard), written to a partial folder first."""
        acc = self.accelerator
        final, tmp = self.ckpt_root / f"step-{self.step}", self.ckpt_root / f".step-{self.step}.partial"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "trainer.json").write_text(json.dumps({"step": self.step, "config": to_dict(self.cfg)}, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            (self.ckpt_root / "latest.tmp").write_text(str(self.step))
            (self.ckpt_root / "latest.tmp").replace(self.ckpt_root / "latest")
            for old in sorted(self.ckpt_root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def latest_checkpoint(self) -> Path | None:
        f = self.ckpt_root / "latest"
        if not f.exists():
            return None
        p = self.ckpt_root / f"step-{int(f.read_text().strip())}"
        return p if (p / "trainer.json").exists() else None

    def load_checkpoint(self, path: Path) -> None:
        acc = self.accelerator
        acc.load_state(str(path))
        if acc.is_main_process and self.metrics.path.exists():
            rows = [r for r in self.metrics.path.read_text().splitlines() if r.strip() and json.loads(r).get("step", 0) <= self.step]
            self.metrics.path.write_text("".join(r + "\n" for r in rows))


def snapshot_dir(out: str | Path, step: int) -> Path:
    """Where PPO keeps its policy after ``step`` steps (``--snapshot-steps``)."""
    return Path(out) / "snapshots" / f"step-{step:05d}"


def snapshots(out: str | Path) -> dict[int, Path]:
    """The policies a PPO run kept (``--snapshot-steps``), by step; complete ones only."""
    found = {}
    for d in sorted((Path(out) / "snapshots").glob("step-*")):
        if (d / "config.json").exists() and d.name[5:].isdigit():
            found[int(d.name[5:])] = d
    return found
