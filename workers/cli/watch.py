"""`conveyor status --watch`: the status page's figures, live in the terminal (rich)."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

from rich.console import Group
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

from shared.config import Settings
from shared.db.engine import session_scope
from shared.messaging.depth import queue_depths
from shared.signals import stop_on_signals
from workers.cli.common import console, sessions
from workers.ingress.ui.overview import DepthReader, Overview, build_overview

STATES = ("queued", "running", "succeeded", "failed", "dead")


def watch_status(settings: Settings, interval_s: float, *, iterations: int | None = None) -> None:
    """Redraw every `interval_s` until Ctrl-C (or `iterations` frames, for tests)."""
    broker_url = settings.broker_url
    reader: DepthReader | None = None
    if broker_url:
        reader = lambda: queue_depths(broker_url, settings.rabbitmq_api_url)  # noqa: E731
    frames = 0
    # Not a terminal (a pipe, a log file): print each frame instead of redrawing in place.
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    # Ctrl-C sets a flag the loop checks, rather than raising KeyboardInterrupt wherever the
    # main thread happens to be (inside a driver's blocking call it could be swallowed and
    # the watch would not stop: seen under load).
    stop = threading.Event()
    restore_sigint = stop_on_signals(stop, [signal.SIGINT])
    with sessions() as factory:
        try:
            if live is not None:
                live.start()
            while not stop.is_set() and (iterations is None or frames < iterations):
                with session_scope(factory) as session:
                    frame = render(build_overview(session, reader, datetime.now(UTC), limit=5))
                if live is not None:
                    live.update(frame, refresh=True)
                else:
                    console.print(frame)
                frames += 1
                stop.wait(interval_s)
        finally:
            restore_sigint()
            if live is not None:
                live.stop()


def render(o: Overview) -> Group:
    minutes = o.window_s // 60
    pools = Table(
        Column("pool", no_wrap=True),
        "ready",
        "unacked",
        "consumers",
        "dead letters",
        f"ok {minutes}m",
        f"failed {minutes}m",
        title=f"pools at {o.taken_at:%H:%M:%S} UTC",
    )
    for p in o.pools:
        pools.add_row(
            p.pool,
            *(_n(v) for v in (p.ready, p.unacked, p.consumers, p.dead_letters)),
            str(p.succeeded),
            Text(str(p.failed), style="red" if p.failed else ""),
        )
    kinds = Table(Column("kind", no_wrap=True), *STATES, "oldest waiting", title="kinds")
    for kind, counts in sorted(o.states.items()):
        age = o.oldest_age_s.get(kind)
        kinds.add_row(
            kind, *(str(counts.get(s, 0)) for s in STATES), "-" if age is None else f"{age:.0f}s"
        )
    parts: list[Table | Text] = [pools, kinds, _summary(o)]
    if o.failures:
        failures = Table("finished", "kind", "state", "code", "job", title="recent failures")
        for j in o.failures:
            when = f"{j.finished_at:%H:%M:%S}" if j.finished_at else "-"
            failures.add_row(when, j.kind, j.state, j.error_code or "-", str(j.id))
        parts.append(failures)
    return Group(*parts)


def _summary(o: Overview) -> Text:
    leader = f"{len(o.leaders)} leader(s)" if o.leaders else "NO LEADER"
    text = Text(
        f"scheduler: {leader} · outbox: {o.outbox_pending} pending, lag {o.outbox_lag_s:.1f}s"
        f" · OAuth connections needing re-auth: {len(o.reauth)}"
    )
    if o.broker_error:
        text.append(f"\nqueue depth unavailable: {o.broker_error}", style="red")
    return text


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
