"""rlop: RLHF with Reward Learning on Policy (Lang, Huang, Li, NAACL 2024)."""

__version__ = "0.1.0"
