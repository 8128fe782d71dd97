"""Issue 12: schemathesis against a real ingress (uvicorn, PostgreSQL, RabbitMQ), zero failures.

Every check, every phase (explicit examples, boundary coverage, positive and negative
fuzzing, stateful sequences along the schema's links), with two API keys as WFC peers: the
`object_level_authorization` check replays one key's reads as the other, `ignored_auth`
replays requests without a key. Bounded (`--max-examples`, deterministic generation, fixed
seed) so a loaded 2-core CI box finishes in well under 3 minutes and two runs match.

Broken on purpose once each: without `openapi.install` (no error statuses declared) the
schemathesis run fails; with `_visible` in routes_jobs.py letting any key read any job,
schemathesis's own object_level_authorization check did NOT notice (its stateful phase
never paired that read with the other key), so `assert_objects_stay_with_their_key` below
does it directly, and fails then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.embedded import EmbeddedS3
from tests.support.ingress import start_ingress
from tests.support.oauth import new_master_keys
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 5
SEED = 12

# Where `positive_data_acceptance` cannot be satisfied, and why. The check sends values that
# fit the JSON Schema and expects them accepted; for these the server must refuse some:
# - `cursor` is opaque: a string we did not issue is a 400 `bad_cursor`, and no schema can
#   say "a string this server issued" (a pattern would still admit forged ones);
# - an export's `range` (to >= from, at most 10 years, 1970..2999), `timezone` (an IANA
#   name), `cron` (five valid fields) and `template` (a catalogue name with its own columns)
#   are rules between fields or over open vocabularies that JSON Schema cannot state, so
#   those answer 422 with a precise message;
# - `POST /v1/jobs` with an `Idempotency-Key` reused for another body is a 422
#   `idempotency_mismatch`, as the IETF Idempotency-Key draft prescribes; and a job's
#   `run_at` is at most 366 days after *now*, a bound JSON Schema cannot express (422);
# - `POST /v1/uploads`: the size limit depends on the file type and on configuration, so a
#   declared size over it is a 413 `too_large` whatever the schema says.
# Every other check still runs on these operations. GET and POST /v1/jobs share one entry:
# the stateful phase judged POST /v1/jobs by GET's entry when they were apart.
CONFIG = """
# Stateful sequences (create, then read, as one key and then the other) are what the
# object_level_authorization check needs; give them more room than one per operation.
[phases.stateful]
max-steps = 6

[phases.stateful.generation]
max-examples = 60

[[operations]]
include-name = ["GET /v1/jobs", "POST /v1/jobs", "POST /v1/jobs:batch", "GET /v1/files"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "429", "400", "422"
]

[[operations]]
include-name = ["POST /v1/exports", "POST /v1/export-schedules"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "429", "422"
]

[[operations]]
include-name = "POST /v1/uploads"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "429", "413"
]
"""


@pytest.fixture
def stack(s3_server: EmbeddedS3, tmp_path: Path) -> Iterator[Stack]:
    """With object storage and a key ring, so file and OAuth routes work instead of 503."""
    logs = tmp_path / "logs"
    logs.mkdir()
    created = Stack.create(logs, s3=s3_server)
    yield created
    created.close()


def test_schemathesis_finds_nothing(stack: Stack, tmp_path: Path) -> None:
    url = start_ingress(stack, CONVEYOR_MASTER_KEYS=new_master_keys())
    keys = {name: stack.new_api_key() for name in ("alice", "bob")}
    peers = {
        "auth": [
            {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {key}"}]}
            for name, key in keys.items()
        ]
    }
    assert_objects_stay_with_their_key(url, keys["alice"], keys["bob"])
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps(peers))
    report = tmp_path / "report"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        f"--config-file={config}",
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        "--phases=examples,coverage,fuzzing,stateful",
        "--mode=all",
        f"--max-examples={MAX_EXAMPLES}",
        f"--seed={SEED}",
        "--generation-deterministic",
        # One worker: Hypothesis describes filter lambdas with `ast`, which CPython 3.11 can
        # trip over from two threads at once ("AST constructor recursion depth mismatch").
        "--workers=1",
        "--request-timeout=30",
        f"--auth-wfc={auth_file}",
        "--no-color",
        "--report=junit",
        f"--report-dir={report}",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    (tmp_path / "schemathesis.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]


def assert_objects_stay_with_their_key(url: str, owner: str, other: str) -> None:
    """The two keys, directly: schemathesis's object_level_authorization check only probes
    reads its stateful phase happens to reach, so a broken `_visible` can slip past it.
    Every object the owner creates is a 404 for the other key, on every route that takes
    its id, and missing from the other key's lists."""
    as_owner = {"Authorization": f"Bearer {owner}"}
    as_other = {"Authorization": f"Bearer {other}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        job = http.post("/v1/jobs", json={"kind": "diag.noop", "user_id": "u"}, headers=as_owner)
        upload = http.post(
            "/v1/uploads",
            json={"user_id": "u", "filename": "a.png", "content_type": "image/png", "size": 9},
            headers=as_owner,
        )
        assert (job.status_code, upload.status_code) == (202, 201), (job.text, upload.text)
        job_id, upload_id = job.json()["id"], upload.json()["upload_id"]
        probes = [
            ("GET", f"/v1/jobs/{job_id}"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
            ("POST", f"/v1/uploads/{upload_id}/complete"),
        ]
        for method, path in probes:
            response = http.request(method, path, headers=as_other)
            assert response.status_code == 404, (method, path, response.text)
        listed = http.get("/v1/jobs", headers=as_other).json()["jobs"]
        assert job_id not in {j["id"] for j in listed}
        assert http.get(f"/v1/jobs/{job_id}", headers=as_owner).status_code == 200
