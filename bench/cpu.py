"""Where a run's CPU went, by component, from /proc (Linux): the machine as a whole,
RabbitMQ (`beam.smp`), PostgreSQL (every `postgres` process, plus the backends that exited
during the run: the postmaster reaps them, so their CPU is in its children's times) and
the bench itself with every process it started (exited ones through their parents'
children's times), split into the submitting client (the bench process), Conveyor's
scheduler (a process tree whose command line names `scheduler`) and the workers (the
rest). "other" is the rest of the machine: the kernel's network and disk work, and anything
else running.

Every service of a run shares the same cores, so CPU per job is what bounds jobs/s here:
the figures say which component would have to shrink. Per job, over one phase (first
submit → last job done).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    machine: float = 0.0  # seconds of CPU used by anything, all cores together
    rabbitmq: float = 0.0
    postgresql: float = 0.0
    bench: float = 0.0  # this process and its descendants, exited ones included
    client: float = 0.0  # this process alone: the submitter
    scheduler: float = 0.0  # `conveyor scheduler` (the relay and the chores) and its children


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    comm: str
    own: float  # utime + stime
    reaped: float  # cutime + cstime: children it has waited for


def _processes() -> list[_Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw[raw.rindex(")") + 2 :].split()
        own = (int(f[11]) + int(f[12])) * _TICK_S
        reaped = (int(f[13]) + int(f[14])) * _TICK_S
        found.append(_Proc(int(entry.name), int(f[1]), comm, own, reaped))
    return found


def _machine_busy_s() -> float:
    # user nice system idle iowait irq softirq steal: everything but idle and iowait
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) * _TICK_S


def sample() -> CpuSample:
    procs = _processes()
    by_pid = {p.pid: p for p in procs}

    def tree(root: int) -> set[int]:
        members, grew = {root}, True
        while grew:
            grew = False
            for p in procs:
                if p.pid not in members and p.ppid in members:
                    members.add(p.pid)
                    grew = True
        return members

    def used(pids: set[int]) -> float:
        return sum(by_pid[pid].own + by_pid[pid].reaped for pid in pids if pid in by_pid)

    # The postmaster is the `postgres` process whose parent is not one; its tree holds every
    # backend and background worker.
    postgres = {
        p.pid for p in procs if p.comm == "postgres" and by_pid.get(p.ppid, p).comm != "postgres"
    }
    me = os.getpid()
    schedulers = [p.pid for p in procs if p.ppid == me and "scheduler" in _command_line(p.pid)]
    return CpuSample(
        machine=_machine_busy_s(),
        rabbitmq=used({p.pid for p in procs if p.comm == "beam.smp"}),
        postgresql=used(set().union(*(tree(pid) for pid in postgres))),
        bench=used(tree(me)),
        client=by_pid[me].own,
        scheduler=used(set().union(*(tree(pid) for pid in schedulers))),
    )


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def per_job_ms(before: CpuSample, after: CpuSample, jobs: int) -> dict[str, float]:
    """CPU ms per job by component between two samples; "other" = machine - the rest."""
    spent = {
        f.name: (getattr(after, f.name) - getattr(before, f.name)) * 1000 / jobs
        for f in fields(CpuSample)
    }
    spent["other"] = spent["machine"] - spent["rabbitmq"] - spent["postgresql"] - spent["bench"]
    spent["workers"] = spent["bench"] - spent["client"] - spent["scheduler"]
    return spent


def describe(spent: dict[str, float]) -> str:
    return (
        f"machine {spent['machine']:.3f} = RabbitMQ {spent['rabbitmq']:.3f} + PostgreSQL "
        f"{spent['postgresql']:.3f} + workers {spent['workers']:.3f} + scheduler "
        f"{spent['scheduler']:.3f} + client {spent['client']:.3f} + other {spent['other']:.3f}"
    )
