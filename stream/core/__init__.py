"""The pure decision core of LiveCue: ``step(state, event, playbook) -> StepResult``.

No Kafka, Faust, websockets, files, logging or clocks in here: time comes only from event ``ts``,
so a test (or a replay against a tuned playbook) drives a whole live session in milliseconds and
gets the same cues every time. :mod:`stream.playbook` loads playbooks from TOML; the worker owns
the I/O.

Modules: :mod:`.rules` (the :class:`Playbook` shape and defaults), :mod:`.state` (per-room state,
dump/load), :mod:`.engine` (step, windows, tier, cues, stats), :mod:`.align` (canonical order of a
room's events across topics). :mod:`._native` says whether ``state`` and ``engine`` run
compiled by mypyc (``setup.py``) or as source.
"""

from . import _native

_native.select()  # compiled (mypyc) or the source: before the first import of state / engine

from .engine import StepResult, clip_headline, cue_id, snapshot, step, step_many
from .rules import (
    HEADLINE_MAX, LANGUAGES, PLACEHOLDERS, TEXT_KEYS, Bounds, CueText, Intent, Playbook,
    PushStock, ReleaseOrders, SwitchToProfit, SwitchToTrafficDriver, TierRules, UnpaidOrders,
    Windows,
)
from .state import RoomState, dump_state, load_state, new_state, state_size

__all__ = [
    "snapshot",
    "RoomState", "new_state", "step", "step_many", "StepResult", "dump_state", "load_state",
    "state_size", "Playbook", "Windows", "Bounds", "Intent", "TierRules", "PushStock",
    "ReleaseOrders", "SwitchToTrafficDriver", "SwitchToProfit", "UnpaidOrders", "CueText",
    "TEXT_KEYS", "PLACEHOLDERS", "LANGUAGES", "HEADLINE_MAX", "clip_headline", "cue_id",
]
