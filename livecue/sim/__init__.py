"""The live-show simulator: a seeded model of real rooms, named scenarios, a chat corpus, and
the offline backtest that folds a recording through the pure decision core."""

from __future__ import annotations

from .scenarios import SCENARIOS, Beat, Mood, Scenario, scenario_names
from .show import DEFAULT_START_TS, generate, room_ids

__all__ = [
    "generate", "DEFAULT_START_TS", "room_ids", "SCENARIOS", "Scenario", "Beat", "Mood",
    "scenario_names",
]
