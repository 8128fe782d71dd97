"""Dashboards and alert rules name only metrics the code exports (issue #13)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Stack
from tests.unit.test_observability_files import referenced_metrics

pytestmark = pytest.mark.integration

SUFFIXES = re.compile(r"_(total|bucket|sum|count|created)$")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    created = Stack.create(tmp_path)
    yield created
    created.close()


def _exported(stack: Stack) -> set[str]:
    """What a real ingress serves (its gauges read PostgreSQL and RabbitMQ) plus every metric
    the workers and the scheduler define: the same process-wide registry in every process."""
    import shared.metrics  # noqa: F401 - registers the worker and scheduler metrics

    body = stack.client.get("/metrics").text
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(SUFFIXES.sub("", family.name))
        names.update(SUFFIXES.sub("", sample.name) for sample in family.samples)
    return {n for n in names if n.startswith("conveyor_")}


def test_every_metric_a_panel_or_rule_names_is_exported(stack: Stack) -> None:
    exported = _exported(stack)
    referenced = {SUFFIXES.sub("", name) for name in referenced_metrics()}
    assert len(referenced) >= 15, referenced  # the extraction still sees the files
    missing = referenced - exported
    assert not missing, f"dashboards or rules name metrics nobody exports: {sorted(missing)}"
