"""Hybrid logical clocks (Kulkarni et al. 2014): wall milliseconds + a counter + the writer.

A timestamp orders by (ms, counter, node); the node (a device id, or "server") breaks ties,
so two distinct writers never produce equal timestamps. On the wire a timestamp is the string
"<ms>-<counter>"; the node is implied by who sent it (a device's id) and never trusted from
the client.
"""

from __future__ import annotations

import re
from typing import NamedTuple

SERVER_NODE = "server"
MAX_COUNTER = 65_535
_WIRE = re.compile(r"(\d{1,15})-(\d{1,5})")


class Hlc(NamedTuple):
    """Ordered as a tuple: (ms, counter, node). A tuple because merges build millions."""

    ms: int
    counter: int
    node: str

    def wire(self) -> str:
        return f"{self.ms}-{self.counter}"

    def after(self, node: str) -> Hlc:
        """The smallest timestamp of `node` that is later than this one."""
        if self.counter >= MAX_COUNTER:
            return Hlc(self.ms + 1, 0, node)
        return Hlc(self.ms, self.counter + 1, node)


def parse(text: str, node: str) -> Hlc:
    """`"<ms>-<counter>"` written by `node`; ValueError when malformed."""
    match = _WIRE.fullmatch(text)
    if match is None:
        raise ValueError(f"hlc {text!r} is not '<milliseconds>-<counter>'")
    counter = int(match.group(2))
    if counter > MAX_COUNTER:
        raise ValueError(f"hlc counter {counter} > {MAX_COUNTER}")
    return Hlc(int(match.group(1)), counter, node)


def receive(local: Hlc, now_ms: int, seen: Hlc | None = None) -> Hlc:
    """The HLC update rule: a clock reading later than `local`, `seen` and the wall clock."""
    latest = max(local, seen) if seen is not None else local
    if now_ms > latest.ms:
        return Hlc(now_ms, 0, local.node)
    return latest.after(local.node)
