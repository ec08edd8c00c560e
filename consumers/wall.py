"""What the lead's wall (``/wall``) needs from the playbooks: when to escalate a room's
unacknowledged critical cue (``[wall] escalate_after_s``, per room when a room has its own
playbook). The gateway puts it in the ``hello`` frame of controller screens."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path

from livecue.config import Settings
from schemas.errors import ConfigError
from stream.core.rules import Wall
from stream.playbook import PlaybookSet

__all__ = ["wall_config"]

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _playbooks(default: Path | None, room_dir: Path | None) -> PlaybookSet | None:
    try:
        return PlaybookSet(default, room_dir)
    except ConfigError as exc:  # the worker refuses to start on it; the wall uses the defaults
        log.warning("playbook not loaded: the wall uses default escalation", extra={"error": str(exc)})
        return None


def wall_config(settings: Settings, rooms: Iterable[str]) -> dict[str, object]:
    """``{"escalate_after_s": {room: seconds}}`` for the rooms of a screen (loaded once)."""
    pbs = _playbooks(settings.playbook, settings.playbook_dir)
    out: dict[str, float] = {}
    for r in rooms:
        out[r] = pbs.for_room(r).wall.escalate_after_s if pbs is not None else Wall().escalate_after_s
    return {"escalate_after_s": out}
