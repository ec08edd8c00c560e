"""Who is connected and who sees which room (pure bookkeeping, no sockets).

:class:`ConnectionTable` enforces the caps (overall, and per token fingerprint) and answers
"which connections see room R" for the broadcaster in O(members).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from schemas.errors import LiveCueError

__all__ = ["ConnectionTable", "TooMany"]

C = TypeVar("C", bound=Hashable)


class TooMany(LiveCueError):
    """A cap was reached. ``scope`` is ``total`` or ``token``."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"too many connections ({scope})")
        self.scope = scope


class ConnectionTable(Generic[C]):
    """Open connections (authenticated or not), their token fingerprints and their rooms."""

    def __init__(self, max_total: int, max_per_token: int) -> None:
        self.max_total = max_total
        self.max_per_token = max_per_token
        self._open: set[C] = set()
        self._token_of: dict[C, str] = {}
        self._per_token: dict[str, int] = {}
        self._rooms_of: dict[C, tuple[str, ...]] = {}
        self._members: dict[str, set[C]] = {}

    def open(self, conn: C) -> None:
        """Count a new connection (before auth). Raises :class:`TooMany` at the overall cap."""
        if conn in self._open:
            return
        if len(self._open) >= self.max_total:
            raise TooMany("total")
        self._open.add(conn)

    def authenticate(self, conn: C, token_fp: str, rooms: Iterable[str]) -> None:
        """Bind an open connection to its token and rooms. Raises :class:`TooMany` per token."""
        if conn not in self._open:
            raise KeyError(conn)
        if conn in self._token_of:
            raise ValueError("already authenticated")
        if self._per_token.get(token_fp, 0) >= self.max_per_token:
            raise TooMany("token")
        self._token_of[conn] = token_fp
        self._per_token[token_fp] = self._per_token.get(token_fp, 0) + 1
        rs = tuple(dict.fromkeys(rooms))
        self._rooms_of[conn] = rs
        for r in rs:
            self._members.setdefault(r, set()).add(conn)

    def close(self, conn: C) -> None:
        """Forget a connection (idempotent)."""
        self._open.discard(conn)
        fp = self._token_of.pop(conn, None)
        if fp is not None:
            n = self._per_token[fp] - 1
            if n:
                self._per_token[fp] = n
            else:
                del self._per_token[fp]
        for r in self._rooms_of.pop(conn, ()):
            m = self._members.get(r)
            if m is not None:
                m.discard(conn)
                if not m:
                    del self._members[r]

    def members(self, room: str) -> tuple[C, ...]:
        """Connections that see ``room`` (a snapshot: safe to iterate while others close)."""
        return tuple(self._members.get(room, ()))

    def rooms_of(self, conn: C) -> tuple[str, ...]:
        return self._rooms_of.get(conn, ())

    def per_token(self, token_fp: str) -> int:
        return self._per_token.get(token_fp, 0)

    def __len__(self) -> int:
        return len(self._open)

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._members)
