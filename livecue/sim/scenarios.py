"""Named show scripts: the beats a controller plays (SKU on air, 憋单 hold, 放单 release) and the
room's mood (how many viewers the show attracts, how engaged they are, how fast they leave).

A scenario is a cycle of beats in seconds from the session start, repeated until the show ends.
Each is built to make a real room do what triggers one kind of cue:

``flash_sale``
    the hero SKU is held at 0 while demand builds, then released in batches that sell out in
    seconds ("没抢到" floods the chat): ``release_orders`` and ``push_stock``.
``popularity_drop``
    a hot room moves to an expensive profit SKU and the audience drains away for minutes:
    ``switch_to_traffic_driver``; the show switches to the traffic driver late, and recovers.
``mixed``
    a short show-opening flash sale (cues in the first half minute), then a popularity drop on
    the profit SKU, a recovery on the traffic driver and another held release.
``steady``
    a calm room on the hero SKU with plenty of stock: the baseline, no beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["Mood", "Beat", "Scenario", "SCENARIOS", "scenario_names"]


@dataclass(frozen=True, slots=True)
class Mood:
    """The room's mood: online target (× the room's baseline), engagement (× chat, likes and
    buying), churn (× the rate at which viewers leave)."""

    target: float = 1.0
    engagement: float = 1.0
    churn: float = 1.0


Action = Literal["on_air", "hold", "release", "mood"]


@dataclass(frozen=True, slots=True)
class Beat:
    """One scripted move at ``at`` seconds into the cycle.

    ``on_air``: put the first SKU of ``role`` on air. ``hold``: set its link stock to 0 (憋单).
    ``release``: set its link stock to ``qty`` (放单). ``mood``: change the room's mood.
    """

    at: float
    action: Action
    role: str = ""
    qty: int = 0
    mood: Mood | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    opening: Mood
    cycle_s: float
    beats: tuple[Beat, ...]
    #: role -> link stock in the session_start lineup
    stock: dict[str, int] = field(default_factory=dict)
    #: what it is built to trigger (documentation and tests)
    triggers: tuple[str, ...] = ()


def _flash_sale_beats(t0: float) -> tuple[Beat, ...]:
    return (
        Beat(t0, "on_air", "hero"),
        Beat(t0, "hold", "hero"),
        Beat(t0, "mood", mood=Mood(1.15, 1.35)),
        Beat(t0 + 50, "release", "hero", qty=60),
        Beat(t0 + 95, "release", "hero", qty=150),
        Beat(t0 + 150, "mood", mood=Mood(1.1, 1.1)),
    )


SCENARIOS: Final[dict[str, Scenario]] = {
    s.name: s
    for s in (
        Scenario(
            name="flash_sale",
            summary="hero SKU held (憋单), then released (放单) in batches that sell out in seconds",
            opening=Mood(1.0, 1.0),
            cycle_s=300,
            beats=(
                Beat(0, "on_air", "traffic_driver"),
                *_flash_sale_beats(20),
                Beat(200, "on_air", "giveaway"),
                Beat(200, "release", "giveaway", qty=50),
                Beat(240, "on_air", "traffic_driver"),
                Beat(240, "release", "traffic_driver", qty=800),
            ),
            stock={"traffic_driver": 800, "giveaway": 50, "hero": 300, "profit": 200},
            triggers=("release_orders", "push_stock"),
        ),
        Scenario(
            name="popularity_drop",
            summary="a hot room moves to an expensive profit SKU and its audience drains away",
            opening=Mood(1.2, 1.3),
            cycle_s=420,
            beats=(
                Beat(0, "on_air", "hero"),
                Beat(0, "mood", mood=Mood(1.2, 1.3)),
                Beat(60, "on_air", "profit"),
                Beat(75, "mood", mood=Mood(0.45, 0.6, churn=2.2)),
                Beat(300, "on_air", "traffic_driver"),
                Beat(300, "release", "traffic_driver", qty=800),
                Beat(300, "mood", mood=Mood(1.2, 1.25)),
            ),
            stock={"traffic_driver": 800, "giveaway": 50, "hero": 500, "profit": 300},
            triggers=("switch_to_traffic_driver",),
        ),
        Scenario(
            name="mixed",
            summary="an opening flash sale, a popularity drop on the profit SKU, a recovery, repeat",
            opening=Mood(1.2, 1.4),
            cycle_s=600,
            beats=(
                # The show opens hot on the hero with a small batch: it sells out in seconds.
                Beat(0, "on_air", "hero"),
                Beat(0, "mood", mood=Mood(1.2, 1.4)),
                Beat(40, "hold", "hero"),
                Beat(75, "release", "hero", qty=80),
                Beat(120, "release", "hero", qty=150),
                Beat(170, "on_air", "profit"),
                Beat(185, "mood", mood=Mood(0.45, 0.6, churn=2.2)),
                Beat(400, "on_air", "traffic_driver"),
                Beat(400, "release", "traffic_driver", qty=800),
                Beat(400, "mood", mood=Mood(1.2, 1.3)),
                *_flash_sale_beats(470)[:3],
                Beat(530, "release", "hero", qty=100),
                Beat(570, "release", "hero", qty=150),
            ),
            stock={"traffic_driver": 800, "giveaway": 50, "hero": 40, "profit": 300},
            triggers=("push_stock", "release_orders", "switch_to_traffic_driver"),
        ),
        Scenario(
            name="steady",
            summary="a calm room on the hero SKU with plenty of stock (baseline, no beat)",
            opening=Mood(1.0, 1.0),
            cycle_s=3600,
            beats=(Beat(0, "on_air", "hero"),),
            stock={"traffic_driver": 5000, "giveaway": 50, "hero": 100000, "profit": 5000},
        ),
    )
}


def scenario_names() -> tuple[str, ...]:
    return tuple(SCENARIOS)
