"""`export.create`: the request an export is made from, and the job payload (just its id).

The request is validated here (ingress and worker share it) and stored on the export row;
the message carries only the export id.
"""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Column and dataset names are identifiers we look up in a whitelist, never SQL.
Name = str


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"
    PARQUET = "parquet"
    XLSX = "xlsx"
    PDF = "pdf"
    HTML = "html"


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZIP = "zip"


RangeKind = Literal[
    "today", "last_7_days", "last_week", "last_month", "last_quarter", "year_to_date", "custom"
]


EARLIEST, LATEST = date(1970, 1, 1), date(2999, 12, 31)


class DateRange(BaseModel):
    """Calendar days in the user's time zone; `custom` is inclusive of both dates."""

    model_config = ConfigDict(extra="forbid")

    kind: RangeKind
    start: date | None = Field(default=None, alias="from")
    end: date | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _custom_needs_dates(self) -> DateRange:
        if self.kind == "custom":
            if self.start is None or self.end is None:
                raise ValueError("a custom range needs from and to")
            if self.end < self.start:
                raise ValueError("to is before from")
            if (self.end - self.start).days > 3660:
                raise ValueError("a custom range spans at most 10 years")
            if self.start < EARLIEST or self.end > LATEST:
                raise ValueError(f"dates between {EARLIEST} and {LATEST}")
        elif self.start is not None or self.end is not None:
            raise ValueError("from/to only go with kind=custom")
        return self


FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "is_null", "not_null"]
Scalar = str | int | float | bool | None


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: Name = Field(max_length=64)
    op: FilterOp
    value: Scalar | list[Scalar] = None

    @field_validator("value")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if len(values) > 1000:
            raise ValueError("at most 1000 values")
        if any(isinstance(v, str) and ("\x00" in v or len(v) > 1000) for v in values):
            raise ValueError("strings must be under 1000 characters without NUL")
        return value


class Aggregate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fn: Literal["count", "sum", "avg", "min", "max"]
    column: Name | None = Field(default=None, max_length=64)  # None only with count


class CustomSpec(BaseModel):
    """A custom export: dataset and columns from a whitelist, never SQL text."""

    model_config = ConfigDict(extra="forbid")

    dataset: Name = Field(max_length=64)
    columns: list[Name] = Field(default_factory=list, max_length=50)
    filters: list[Filter] = Field(default_factory=list, max_length=20)
    group_by: list[Name] = Field(default_factory=list, max_length=5)
    aggregates: list[Aggregate] = Field(default_factory=list, max_length=10)


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom: CustomSpec | None = None
    title: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)  # default: the user's


class ExportRequest(BaseModel):
    """What `POST /v1/exports` and a schedule ask for."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    template: Name = Field(max_length=64)
    format: ExportFormat
    range: DateRange
    anonymize: bool = Field(default=False, strict=True)
    compression: Compression = Compression.NONE
    options: ExportOptions = Field(default_factory=ExportOptions)

    @model_validator(mode="after")
    def _custom_needs_spec(self) -> ExportRequest:
        if (self.template == "custom") != (self.options.custom is not None):
            raise ValueError("options.custom goes with template=custom, and only with it")
        return self


class ExportPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    export_id: uuid.UUID
