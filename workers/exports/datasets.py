"""The product data an export may read: datasets, their columns and who may see which rows.

Every column a request can name is declared here with its SQL expression (built with
SQLAlchemy, never from request text), its type, and its sensitivity for anonymization.
Timestamps come out as local wall-clock time in the export's time zone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    case,
    cast,
    extract,
    func,
    select,
)

from shared.db.models import Channel, ChannelMember, Contact, Decision, Message, Task, User

# How anonymization treats a column: pseudonym (keyed HMAC) or free-text scrub.
Sensitivity = Literal["user_id", "name", "email", "phone", "text"]
ColumnType = Literal["text", "int", "float", "bool", "time", "date", "id"]


@dataclass(frozen=True)
class Scope:
    """What every query of one export is bound to."""

    user_id: uuid.UUID
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    timezone: str


@dataclass(frozen=True)
class Col:
    name: str
    type: ColumnType
    expr: Callable[[Scope], ColumnElement[Any]]
    sensitivity: Sensitivity | None = None
    description: str = ""


@dataclass(frozen=True)
class Chart:
    title: str
    x: str  # a column of the export: the categories
    y: str  # a numeric column: the bar heights


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    columns: tuple[Col, ...]
    base: Callable[[Scope], Select[Any]]  # FROM + row visibility + date range; no columns
    order: tuple[Any, ...]  # a stable row order: time, then id

    def column(self, name: str) -> Col | None:
        return next((c for c in self.columns if c.name == name), None)


def local(column: Any) -> Callable[[Scope], ColumnElement[Any]]:
    return lambda s: func.timezone(s.timezone, column)


def text_id(column: Any) -> Callable[[Scope], ColumnElement[Any]]:
    return lambda s: cast(column, String)


def plain(column: Any) -> Callable[[Scope], ColumnElement[Any]]:
    return lambda s: column


def _in_range(column: Any, scope: Scope) -> ColumnElement[bool]:
    return and_(column >= scope.start, column < scope.end)


def _messages_base(scope: Scope) -> Select[Any]:
    """Messages in channels the user belongs to (membership not left), in the range."""
    return (
        select()
        .select_from(Message)
        .join(
            ChannelMember,
            and_(
                ChannelMember.channel_id == Message.channel_id,
                ChannelMember.user_id == scope.user_id,
                ChannelMember.deleted_at.is_(None),
            ),
        )
        .join(Channel, Channel.id == Message.channel_id)
        .join(User, User.id == Message.author_id)
        .where(Message.deleted_at.is_(None), _in_range(Message.created_at, scope))
    )


def _owned_base(model: Any, owner: Any, when: Any) -> Callable[[Scope], Select[Any]]:
    def base(scope: Scope) -> Select[Any]:
        return (
            select()
            .select_from(model)
            .where(owner == scope.user_id, model.deleted_at.is_(None), _in_range(when, scope))
        )

    return base


def _decisions_base(scope: Scope) -> Select[Any]:
    base = _owned_base(Decision, Decision.user_id, Decision.decided_at)(scope)
    return base.outerjoin(Channel, Channel.id == Decision.channel_id)


_HOURS_TO_COMPLETE = extract("epoch", Task.completed_at - Task.created_at) / 3600.0

MESSAGES = Dataset(
    "messages",
    "Messages in the channels you belong to, by sending time",
    (
        Col("message_id", "id", text_id(Message.id)),
        Col("sent_at", "time", local(Message.created_at)),
        Col("channel_id", "id", text_id(Message.channel_id)),
        Col("channel", "text", lambda s: func.coalesce(Channel.name, "(direct)")),
        Col("author_id", "id", text_id(Message.author_id), "user_id"),
        Col("author_name", "text", plain(User.display_name), "name"),
        Col("author_email", "text", plain(User.email), "email"),
        Col("body", "text", plain(Message.body), "text"),
        Col("length", "int", lambda s: func.char_length(Message.body)),
        Col("is_reply", "bool", lambda s: Message.reply_to_id.is_not(None)),
    ),
    _messages_base,
    (Message.created_at, Message.id),
)

TASKS = Dataset(
    "tasks",
    "Your tasks, by creation time",
    (
        Col("task_id", "id", text_id(Task.id)),
        Col("title", "text", plain(Task.title), "text"),
        Col("notes", "text", plain(Task.notes), "text"),
        Col("status", "text", plain(Task.status)),
        Col("created_at", "time", local(Task.created_at)),
        Col("due_at", "time", local(Task.due_at)),
        Col("completed_at", "time", local(Task.completed_at)),
        Col("hours_to_complete", "float", lambda s: cast(_HOURS_TO_COMPLETE, Float)),
        Col(
            "overdue",
            "bool",
            lambda s: case(
                (Task.due_at.is_(None), False),
                (Task.completed_at.is_not(None), Task.completed_at > Task.due_at),
                else_=Task.due_at < func.now(),
            ),
        ),
    ),
    _owned_base(Task, Task.user_id, Task.created_at),
    (Task.created_at, Task.id),
)

DECISIONS = Dataset(
    "decisions",
    "Your decisions, by decision time",
    (
        Col("decision_id", "id", text_id(Decision.id)),
        Col("decided_at", "time", local(Decision.decided_at)),
        Col("title", "text", plain(Decision.title), "text"),
        Col("outcome", "text", plain(Decision.outcome), "text"),
        Col("rationale", "text", plain(Decision.rationale), "text"),
        Col("channel", "text", lambda s: func.coalesce(Channel.name, "")),
    ),
    _decisions_base,
    (Decision.decided_at, Decision.id),
)

CONTACTS = Dataset(
    "contacts",
    "Your contacts, by creation time",
    (
        Col("contact_id", "id", text_id(Contact.id)),
        Col("name", "text", plain(Contact.name), "name"),
        Col("email", "text", plain(Contact.email), "email"),
        Col("phone", "text", plain(Contact.phone), "phone"),
        Col("company", "text", plain(Contact.company)),
        Col("notes", "text", plain(Contact.notes), "text"),
        Col("created_at", "time", local(Contact.created_at)),
    ),
    _owned_base(Contact, Contact.owner_id, Contact.created_at),
    (Contact.created_at, Contact.id),
)

DATASETS = {d.name: d for d in (MESSAGES, TASKS, DECISIONS, CONTACTS)}
