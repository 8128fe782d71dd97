"""deploy/prometheus and deploy/grafana: well-formed, and the rules pass promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\bconveyor_[a-z0-9_]+")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _panel_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            exprs += [t["expr"] for t in panel.get("targets", [])]
        exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return exprs


def referenced_metrics() -> set[str]:
    """Every conveyor_* name an alert rule or a dashboard query uses."""
    exprs = [rule["expr"] for rule in _rules()] + _panel_exprs()
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_each_alert_has_severity_summary_and_a_runbook_entry() -> None:
    doc = OPERATIONS_DOC.read_text().lower()
    for rule in _rules():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert'].lower()}" in doc, f"no runbook entry for {rule['alert']}"


def test_dashboards_query_the_provisioned_datasource() -> None:
    assert DASHBOARDS
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "prometheus", panel["title"]
                assert panel["targets"], panel["title"]


def test_scrape_config_loads_the_rules_file() -> None:
    config = yaml.safe_load(SCRAPE.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"conveyor-ingress", "conveyor-scheduler", "conveyor-workers"} <= jobs


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; scripts/services)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout
