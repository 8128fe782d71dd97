"""Custom exports: a validated structure (dataset, columns, filters, grouping, aggregates).

Names are looked up in the dataset's whitelist and values are coerced to the column's type,
so nothing from the request is ever SQL text; a bad name or value is `invalid_export`.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Float, Select, cast, func

from shared.jobs.payloads.exports import Aggregate, CustomSpec, Filter, Scalar
from workers.exports.datasets import DATASETS, Chart, Col, Dataset, Scope
from workers.exports.errors import InvalidExport

ORDERED = {"int", "float", "time", "date", "text"}
NUMERIC = {"int", "float"}
_SQL_TYPES: dict[str, Any] = {"int": BigInteger, "float": Float}


def custom_plan_parts(
    spec: CustomSpec, scope: Scope
) -> tuple[Select[Any], list[Col], Chart | None]:
    dataset = DATASETS.get(spec.dataset)
    if dataset is None:
        raise InvalidExport(f"unknown dataset {spec.dataset!r}; one of {sorted(DATASETS)}")
    where = [_condition(_column(dataset, f.column), f, scope) for f in spec.filters]
    base = dataset.base(scope).where(*where)
    if not spec.group_by and not spec.aggregates:
        cols = [_column(dataset, n) for n in spec.columns] or list(dataset.columns)
        labelled = [c.expr(scope).label(c.name) for c in cols]
        return base.add_columns(*labelled).order_by(*dataset.order), cols, None
    if spec.columns:
        raise InvalidExport("with group_by or aggregates, list grouped columns in group_by only")
    groups = [_column(dataset, n) for n in spec.group_by]
    aggs = [_aggregate(dataset, a, scope) for a in spec.aggregates] or [_count()]
    exprs = [g.expr(scope) for g in groups]
    statement = (
        base.add_columns(*[e.label(g.name) for e, g in zip(exprs, groups, strict=True)])
        .add_columns(*[expr.label(col.name) for col, expr in aggs])
        .group_by(*exprs)
        .order_by(*exprs)
    )
    cols = groups + [col for col, _ in aggs]
    return statement, cols, _chart(groups, aggs)


def _chart(groups: list[Col], aggs: list[tuple[Col, Any]]) -> Chart | None:
    if len(groups) != 1:
        return None
    measure = aggs[0][0]
    return Chart(f"{measure.name} by {groups[0].name}", groups[0].name, measure.name)


def _column(dataset: Dataset, name: str) -> Col:
    col = dataset.column(name)
    if col is None:
        names = [c.name for c in dataset.columns]
        raise InvalidExport(f"{dataset.name} has no column {name!r}; one of {names}")
    return col


def _count() -> tuple[Col, Any]:
    col = Col("count", "int", lambda s: func.count())
    return col, func.count()


def _aggregate(dataset: Dataset, agg: Aggregate, scope: Scope) -> tuple[Col, Any]:
    if agg.fn == "count":
        if agg.column is None:
            return _count()
        col = _column(dataset, agg.column)
        return replace(col, name=f"count_{col.name}", type="int", sensitivity=None), func.count(
            col.expr(scope)
        )
    if agg.column is None:
        raise InvalidExport(f"{agg.fn} needs a column")
    col = _column(dataset, agg.column)
    allowed = NUMERIC if agg.fn in ("sum", "avg") else NUMERIC | {"time", "date"}
    if col.type not in allowed:
        raise InvalidExport(f"{agg.fn} does not apply to {col.name} ({col.type})")
    out_type = "float" if agg.fn == "avg" else col.type
    # Cast so every row of a column has one Arrow type (sum/avg of integers is numeric).
    expr = getattr(func, agg.fn)(col.expr(scope))
    if out_type in _SQL_TYPES:
        expr = cast(expr, _SQL_TYPES[out_type])
    return replace(col, name=f"{agg.fn}_{col.name}", type=out_type, sensitivity=None), expr


def _condition(col: Col, flt: Filter, scope: Scope) -> ColumnElement[bool]:
    expr = col.expr(scope)
    if flt.op in ("is_null", "not_null"):
        if flt.value is not None:
            raise InvalidExport(f"{flt.op} takes no value")
        return expr.is_(None) if flt.op == "is_null" else expr.is_not(None)
    if flt.op == "in":
        if not isinstance(flt.value, list) or not flt.value:
            raise InvalidExport("in takes a non-empty list")
        return expr.in_([coerce(col, v) for v in flt.value])
    if isinstance(flt.value, list):
        raise InvalidExport(f"{flt.op} takes one value")
    value = coerce(col, flt.value)
    if flt.op == "contains":
        if col.type != "text":
            raise InvalidExport(f"contains applies to text columns, not {col.name}")
        contains: ColumnElement[bool] = expr.icontains(value, autoescape=True)
        return contains
    if flt.op in ("eq", "ne"):
        equal: ColumnElement[bool] = expr == value if flt.op == "eq" else expr != value
        return equal
    if col.type not in ORDERED:
        raise InvalidExport(f"{flt.op} does not apply to {col.name} ({col.type})")
    compared: ColumnElement[bool] = {
        "lt": expr < value,
        "le": expr <= value,
        "gt": expr > value,
        "ge": expr >= value,
    }[flt.op]
    return compared


def coerce(col: Col, value: Scalar | list[Scalar]) -> Any:
    """The filter value as the column's Python type, or `invalid_export`."""
    try:
        return _COERCE[col.type](value)
    except (TypeError, ValueError):
        raise InvalidExport(f"{value!r} is not a valid {col.type} for {col.name}") from None


def _strict(kind: type, value: Any) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise TypeError(value)
    if kind is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, kind):
        raise TypeError(value)
    return value


_COERCE: dict[str, Any] = {
    "text": lambda v: _strict(str, v),
    "int": lambda v: _strict(int, v),
    "float": lambda v: _strict(float, v),
    "bool": lambda v: _strict(bool, v),
    "time": lambda v: datetime.fromisoformat(_strict(str, v)).replace(tzinfo=None),
    "date": lambda v: date.fromisoformat(_strict(str, v)),
    "id": lambda v: str(uuid.UUID(_strict(str, v))),
}
