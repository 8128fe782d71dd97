"""Prometheus metrics shared by workers and ingress (multiprocess-safe via prometheus_client)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_FINISHED = Counter(
    "conveyor_jobs_finished_total",
    "Attempts that ended, by kind and resulting state",
    ["kind", "state"],
)
JOB_RETRIES = Counter("conveyor_job_retries_total", "Attempts that were scheduled again", ["kind"])
JOB_DURATION = Histogram(
    "conveyor_job_duration_seconds",
    "Run time of one attempt",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
MESSAGES_REJECTED = Counter(
    "conveyor_messages_rejected_total", "Messages dead-lettered without running", ["reason"]
)
OUTBOX_PUBLISHED = Counter("conveyor_outbox_published_total", "Outbox rows published", ["exchange"])

# Scheduler (served on its probe port, CONVEYOR_PROBE_PORT). With two schedulers each counts
# what it did itself; sum over instances.
REAPER_ACTIONS = Counter(
    "conveyor_reaper_actions_total",
    "Jobs the reaper handled: reaped (stale heartbeat) or republished (lost message)",
    ["action"],
)
RETENTION_RUNS = Counter(
    "conveyor_retention_runs_total", "Retention (pruning) runs completed", ["target"]
)
RETENTION_DELETED = Counter(
    "conveyor_retention_deleted_total", "Rows deleted by retention runs", ["target"]
)
SCHEDULER_LEADER = Gauge(
    "conveyor_scheduler_is_leader",
    "1 while this scheduler holds the leader lock",
    multiprocess_mode="liveall",
)
