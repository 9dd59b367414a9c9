"""An offline simulation world with known truth: tasks, gold scorer, annotators, splits."""

from rlop.sandbox.gold import GoldAnnotator, NoisyAnnotator, gold_score  # noqa: F401
from rlop.sandbox.world import SandboxConfig, Task, build_world, load_split  # noqa: F401
