"""Export templates: what each one selects, its summary figures and its chart.

`plan(...)` turns a validated request into a `Plan`: a SQLAlchemy statement (no request
text ever reaches SQL: names are looked up in `datasets`, values become bound literals),
the output columns with their sensitivity, the summary query and the chart, if any.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date, Integer, Numeric, Select, Subquery, cast, func, literal, select, text

from shared.db.models import Decision, Message, Task
from shared.jobs.payloads.exports import ExportRequest
from workers.exports.custom import custom_plan_parts
from workers.exports.datasets import (
    DECISIONS,
    MESSAGES,
    TASKS,
    Chart,
    ColumnType,
    Dataset,
    Scope,
    Sensitivity,
)
from workers.exports.errors import InvalidExport


@dataclass(frozen=True)
class OutCol:
    name: str
    type: ColumnType
    sensitivity: Sensitivity | None = None


SummaryFn = Callable[[Subquery], list[Any]]


@dataclass(frozen=True)
class Plan:
    title: str
    statement: Select[Any]
    columns: list[OutCol]
    summary: Select[Any]  # one row: "rows" first, then the template's own figures
    chart: Chart | None = None


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    description: str
    dataset: Dataset | None  # None: a computed template (user activity) or custom
    summary: SummaryFn
    chart: Chart | None = None


def _nothing_more(sq: Subquery) -> list[Any]:
    return []


def _round(value: Any) -> Any:
    return func.round(cast(value, Numeric), 1)


def _message_summary(sq: Subquery) -> list[Any]:
    return [
        func.count(sq.c.author_id.distinct()).label("authors"),
        func.count(sq.c.channel_id.distinct()).label("channels"),
        _round(func.avg(sq.c.length)).label("average_length"),
    ]


def _task_summary(sq: Subquery) -> list[Any]:
    done = func.count().filter(sq.c.status == "done")
    return [
        done.label("completed"),
        _round(100.0 * done / func.greatest(func.count(), 1)).label("completion_pct"),
        func.count().filter(sq.c.overdue).label("overdue"),
        _round(func.avg(sq.c.hours_to_complete)).label("average_hours_to_complete"),
    ]


def _decision_summary(sq: Subquery) -> list[Any]:
    return [
        func.count(func.nullif(sq.c.channel, "").distinct()).label("channels"),
    ]


def _activity_summary(sq: Subquery) -> list[Any]:
    return [
        func.coalesce(func.sum(sq.c[name]), 0).label(name)
        for name in ("messages_sent", "tasks_created", "tasks_completed", "decisions")
    ]


TEMPLATES = {
    t.name: t
    for t in (
        Template(
            "user_activity",
            "User activity summary",
            "One row per day: messages sent, tasks created and completed, decisions made",
            None,
            _activity_summary,
            Chart("Messages sent per day", "day", "messages_sent"),
        ),
        Template(
            "message_analytics",
            "Message analytics",
            "Every message in your channels in the range",
            MESSAGES,
            _message_summary,
        ),
        Template(
            "task_completion",
            "Task completion report",
            "Your tasks created in the range, with completion and overdue status",
            TASKS,
            _task_summary,
        ),
        Template(
            "decision_analytics",
            "Decision analytics",
            "Your decisions made in the range",
            DECISIONS,
            _decision_summary,
        ),
        Template(
            "custom",
            "Custom export",
            "A dataset with chosen columns, filters, grouping and aggregates",
            None,
            _nothing_more,
        ),
    )
}

ACTIVITY_COLUMNS = [
    OutCol("day", "date"),
    OutCol("messages_sent", "int"),
    OutCol("tasks_created", "int"),
    OutCol("tasks_completed", "int"),
    OutCol("decisions", "int"),
]


def template_columns(template: Template) -> list[OutCol]:
    if template.name == "user_activity":
        return ACTIVITY_COLUMNS
    if template.dataset is None:
        return []
    return [OutCol(c.name, c.type, c.sensitivity) for c in template.dataset.columns]


def plan(request: ExportRequest, scope: Scope, *, title: str | None = None) -> Plan:
    template = TEMPLATES.get(request.template)
    if template is None:
        raise InvalidExport(f"unknown template {request.template!r}; one of {sorted(TEMPLATES)}")
    chart = template.chart
    if template.name == "user_activity":
        statement, columns = _activity(scope), ACTIVITY_COLUMNS
    elif template.name == "custom":
        assert request.options.custom is not None  # validated by ExportRequest
        statement, cols, chart = custom_plan_parts(request.options.custom, scope)
        columns = [OutCol(c.name, c.type, c.sensitivity) for c in cols]
    else:
        assert template.dataset is not None
        statement, columns = _rows(template.dataset, scope), template_columns(template)
    sq = statement.subquery("export")
    figures: list[Any] = [func.count().label("rows"), *template.summary(sq)]
    summary: Select[Any] = select(*figures)
    return Plan(title or template.title, statement, columns, summary, chart)


def _rows(dataset: Dataset, scope: Scope) -> Select[Any]:
    labelled = [c.expr(scope).label(c.name) for c in dataset.columns]
    return dataset.base(scope).add_columns(*labelled).order_by(*dataset.order)


def _activity(scope: Scope) -> Select[Any]:
    """Every local day in the range (zero rows included), with the user's counts."""
    tz = scope.timezone

    def day_of(column: Any) -> Any:
        return cast(func.timezone(tz, column), Date)

    def counted(model: Any, owner: Any, when: Any, label: str) -> Select[Any]:
        return (
            select(day_of(when).label("day"), func.count().label(label))
            .where(owner == scope.user_id, model.deleted_at.is_(None))
            .where(when >= scope.start, when < scope.end)
            .group_by(text("1"))
        )

    parts = {
        "messages_sent": counted(Message, Message.author_id, Message.created_at, "n"),
        "tasks_created": counted(Task, Task.user_id, Task.created_at, "n"),
        "tasks_completed": counted(Task, Task.user_id, Task.completed_at, "n"),
        "decisions": counted(Decision, Decision.user_id, Decision.decided_at, "n"),
    }
    first = day_of(literal(scope.start))
    last = day_of(literal(scope.end)) - 1
    days = select(
        cast(func.generate_series(first, last, text("interval '1 day'")), Date).label("day")
    ).subquery("days")
    columns: list[Any] = [days.c.day]
    statement = select()
    joined: Any = days
    for name, part in parts.items():
        sq = part.subquery(name)
        joined = joined.outerjoin(sq, sq.c.day == days.c.day)
        columns.append(cast(func.coalesce(sq.c.n, 0), Integer).label(name))
    return statement.add_columns(*columns).select_from(joined).order_by(days.c.day)
