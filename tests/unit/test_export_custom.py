"""Custom exports: only whitelisted names, values coerced to the column type, never SQL text."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.db.repos.exports import literal_sql
from shared.jobs.payloads.exports import ExportRequest
from workers.exports.datasets import Scope
from workers.exports.errors import InvalidExport
from workers.exports.templates import TEMPLATES, plan

MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
SCOPE = Scope(uuid.uuid4(), *MARCH, "UTC")


def request(custom: dict[str, Any] | None = None, template: str = "custom") -> ExportRequest:
    options = {"custom": custom} if custom is not None else {}
    return ExportRequest.model_validate(
        {"template": template, "format": "csv", "range": {"kind": "today"}, "options": options}
    )


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_compiles_to_sql(name: str) -> None:
    custom = {"dataset": "messages"} if name == "custom" else None
    the_plan = plan(request(custom, template=name), SCOPE)
    assert "SELECT" in literal_sql(the_plan.statement)
    assert literal_sql(the_plan.summary).count("count(*)") >= 1


def test_grouped_custom_export_has_a_chart_and_typed_aggregates() -> None:
    custom = {
        "dataset": "tasks",
        "group_by": ["status"],
        "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "hours_to_complete"}],
        "filters": [{"column": "title", "op": "contains", "value": "50%_off"}],
    }
    the_plan = plan(request(custom), SCOPE)
    assert [c.name for c in the_plan.columns] == ["status", "count", "avg_hours_to_complete"]
    assert the_plan.chart is not None and the_plan.chart.x == "status"
    sql = literal_sql(the_plan.statement)
    assert "50/%/_off" in sql  # LIKE wildcards in the value are escaped, not wildcards


@pytest.mark.parametrize(
    "custom",
    [
        {"dataset": "pg_authid"},
        {"dataset": "messages", "columns": ["body; DROP TABLE users"]},
        {"dataset": "messages", "filters": [{"column": "length", "op": "gt", "value": "1 OR 1=1"}]},
        {"dataset": "messages", "filters": [{"column": "body", "op": "lt", "value": True}]},
        {"dataset": "messages", "filters": [{"column": "is_reply", "op": "gt", "value": True}]},
        {"dataset": "messages", "filters": [{"column": "length", "op": "contains", "value": "1"}]},
        {"dataset": "messages", "filters": [{"column": "sent_at", "op": "ge", "value": "soon"}]},
        {"dataset": "messages", "filters": [{"column": "author_id", "op": "eq", "value": "x"}]},
        {"dataset": "messages", "filters": [{"column": "length", "op": "in", "value": []}]},
        {"dataset": "messages", "filters": [{"column": "body", "op": "is_null", "value": "x"}]},
        {"dataset": "messages", "aggregates": [{"fn": "sum", "column": "body"}]},
        {"dataset": "messages", "aggregates": [{"fn": "max"}]},
        {"dataset": "messages", "columns": ["body"], "group_by": ["channel"]},
    ],
)
def test_invalid_custom_structures_are_refused(custom: dict[str, Any]) -> None:
    with pytest.raises(InvalidExport):
        plan(request(custom), SCOPE)


def test_hostile_filter_text_stays_a_quoted_literal() -> None:
    hostile = "x'); DROP TABLE users; --\\"
    flt = {"column": "company", "op": "eq", "value": hostile}
    custom = {"dataset": "contacts", "filters": [flt]}
    sql = literal_sql(plan(request(custom), SCOPE).statement)
    assert "'x''); DROP TABLE users; --\\'" in sql  # quote doubled: one string literal


def test_custom_options_and_template_must_agree() -> None:
    with pytest.raises(ValueError):
        request(None, template="custom")
    with pytest.raises(ValueError):
        request({"dataset": "messages"}, template="message_analytics")
    with pytest.raises(InvalidExport):
        plan(request(None, template="no_such_template"), SCOPE)
