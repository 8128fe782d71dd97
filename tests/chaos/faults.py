"""The fault loop: inject one fault, observe recovery (a fresh probe job succeeds), repeat.

Recovery is a condition, never a clock: after each fault a high-priority probe job that also
writes and reads S3 is submitted through the ingress and must reach `succeeded`. A process
that exited cannot heal itself; the loop restarts it at once and notes it in the table, so
the run goes on and the table says which component did not survive the fault.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.chaos.clients import Accepted, probe_submission, submit_until_accepted
from tests.chaos.harness import ChaosStack

WORKER_CHILD = "SIGKILL worker child"
SCHEDULER = "SIGKILL scheduler"
AMQP = "close AMQP connections"
POSTGRES = "restart PostgreSQL"
S3 = "restart S3"
ROUND = (WORKER_CHILD, AMQP, POSTGRES, SCHEDULER, S3)


@dataclass
class FaultRecord:
    fault: str
    at_s: float  # since the run started
    recovery_s: float | None = None  # None: not recovered within the timeout
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        recovered = "NOT RECOVERED" if self.recovery_s is None else f"{self.recovery_s:6.1f} s"
        notes = "; ".join(self.notes) or "self-healed"
        return f"| {self.fault:<24} | {self.at_s:7.1f} s | {recovered:>13} | {notes} |"


def table(records: list[FaultRecord]) -> list[str]:
    head = ["| fault | at | recovery | notes |", "|---|---|---|---|"]
    return head + [r.line() for r in records]


class PidWatch(threading.Thread):
    """Notes when worker child processes disappear, to bound runs that left no `end` line."""

    def __init__(self, stack: ChaosStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.deaths: dict[int, int] = {}  # pid -> time_ns last seen alive (or killed)
        self._seen: dict[int, int] = {}
        self.stop = threading.Event()

    def died(self, pid: int) -> None:
        self.deaths.setdefault(pid, time.time_ns())

    def run(self) -> None:
        while not self.stop.wait(0.05):
            now = time.time_ns()
            alive = {
                child.pid
                for name, process in list(self.stack.processes.items())
                if name.startswith("worker")
                for child in process.children()
            }
            for pid in alive:
                self._seen[pid] = now
            for pid, last in list(self._seen.items()):
                if pid not in alive:
                    self.deaths.setdefault(pid, last)
                    del self._seen[pid]


@dataclass
class FaultLoop:
    stack: ChaosStack
    token: str
    accepted: Accepted
    watch: PidWatch
    started: float
    worker_processes: int
    recovery_timeout_s: float
    pg_down_s: float
    probe_patience_s: float = 15.0
    records: list[FaultRecord] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def run(self, min_rounds: int, more: Callable[[], bool], budget_s: float) -> None:
        """`min_rounds` rounds of every fault, then more rounds while `more()` (jobs are still
        being submitted): faults should hit work in flight, not an idle system. No fault
        starts after `budget_s` (slow recoveries on a loaded box keep the run bounded)."""
        rounds = 0
        while rounds < min_rounds or more():
            self.run_faults(list(ROUND), until=self.started + budget_s)
            rounds += 1
            if time.monotonic() > self.started + budget_s:
                return

    def run_faults(self, faults: list[str], until: float) -> None:
        for fault in faults:
            if time.monotonic() > until:
                return
            record = FaultRecord(fault, time.monotonic() - self.started)
            self.records.append(record)
            injected = time.monotonic()
            self._inject(fault, record)
            if self._await_recovery(record):
                record.recovery_s = time.monotonic() - injected

    def _inject(self, fault: str, record: FaultRecord) -> None:
        actions: dict[str, Callable[[FaultRecord], None]] = {
            WORKER_CHILD: self._kill_worker_child,
            SCHEDULER: self._kill_scheduler,
            AMQP: lambda _: self.stack.close_amqp_connections(),
            POSTGRES: lambda _: self.stack.pg.restart(down_s=self.pg_down_s),
            S3: lambda _: self.stack.restart_s3(),
        }
        actions[fault](record)

    def _kill_worker_child(self, record: FaultRecord) -> None:
        pools = [p for n, p in self.stack.processes.items() if n.startswith("worker")]
        pool = pools[len(self.records) % len(pools)]
        children = pool.children()
        if not children:
            record.notes.append(f"{pool.name} had no child to kill")
            return
        victim = self.rng.choice(children)
        os.kill(victim.pid, signal.SIGKILL)
        self.watch.died(victim.pid)
        record.notes.append(f"killed pid {victim.pid} of {pool.name}")

    def _kill_scheduler(self, record: FaultRecord) -> None:
        scheduler = self.stack.processes["scheduler"]
        self.stack.kill_group(scheduler, signal.SIGKILL)
        self.stack.spawn("scheduler", scheduler.args)
        record.notes.append("restarted (part of the fault)")

    def heal(self, record: FaultRecord | None = None) -> list[str]:
        """Restart every process that exited; returns (and notes) what was restarted."""
        restarted = []
        for name, process in list(self.stack.processes.items()):
            if not process.alive():
                for child in process.children():
                    self.watch.died(child.pid)
                self.stack.restart(name)
                restarted.append(f"{name} exited (rc {process.popen.returncode}): restarted")
        if record is not None:
            record.notes.extend(restarted)
        return restarted

    def _await_recovery(self, record: FaultRecord) -> bool:
        """Recovered when a probe submitted after the fault succeeds. A probe stuck longer
        than `probe_patience_s` (its delivery lost) is noted and another one is sent."""
        deadline = time.monotonic() + self.recovery_timeout_s
        probes: list[str] = []
        sent = 0.0
        while time.monotonic() < deadline:
            self.heal(record)
            if not probes or time.monotonic() - sent > self.probe_patience_s:
                probe = self._submit_probe(deadline)
                sent = time.monotonic()
                if probe is not None:
                    probes.append(probe)
                continue
            states = [self._state(p) for p in probes]
            if "succeeded" in states and self._pools_full():
                if len(probes) > 1:
                    record.notes.append(f"probes sent: {len(probes)}, ended: {states}")
                return True
            time.sleep(0.2)
        record.notes.append(f"probes sent: {len(probes)}")
        if not self._pools_full():
            record.notes.append("a worker pool is below its process count")
        return False

    def _submit_probe(self, deadline: float) -> str | None:
        stop = threading.Event()
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop.set)
        timer.start()
        try:
            with httpx.Client(
                base_url=self.stack.base_url,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            ) as client:
                return submit_until_accepted(client, probe_submission(), self.accepted, stop)
        finally:
            timer.cancel()

    def _state(self, job_id: str) -> str | None:
        try:
            rows = self.stack.execute_sql(f"SELECT state FROM jobs WHERE id = '{job_id}'")
        except Exception:  # PostgreSQL still down: not recovered yet
            return None
        return str(rows[0][0]) if rows else None

    def _pools_full(self) -> bool:
        return all(
            len(p.children()) >= self.worker_processes
            for n, p in self.stack.processes.items()
            if n.startswith("worker")
        )
