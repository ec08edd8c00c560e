"""Consumers of LiveCue's output topics: the websocket gateway and its screens.

The gateway's logic lives in pure modules with no I/O (:mod:`.tokens`, :mod:`.protocol`,
:mod:`.subscriptions`, :mod:`.backlog`, :mod:`.ratelimit`, :mod:`.origins`); :mod:`.gateway` is the
thin websockets + aiokafka adapter around them. Import :class:`~consumers.gateway.Gateway` from
its module (it pulls in aiokafka and websockets; the pure modules do not).
"""
