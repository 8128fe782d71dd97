"""Start and drive the loopback OAuth 2.0 test server (``server.mjs``, built on oidc-provider).

Typical use in a test module::

    @pytest.fixture(scope="module")
    def oauth_server(tmp_path_factory):
        with oidc_server(
            tmp_path_factory.mktemp("oidc"),
            clients=[{...}],
            rotate_refresh_tokens=True,
            access_token_ttl_s=60,
        ) as server:
            yield server

    code = obtain_authorization_code(
        oauth_server, client_id="...", redirect_uri="...", scope="openid", state="xyz"
    )

Needs ``node`` and ``npm`` on PATH (Node 20.19+). The node dependencies are installed with
``npm ci`` on first use, from the committed package-lock.json, so CI has nothing extra to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

SERVER_DIR = Path(__file__).resolve().parent
"""The node project: package.json, package-lock.json, server.mjs."""

PROVIDER_PACKAGE = "oidc-provider"
DEFAULT_LOGIN = "conveyor-test-user"
_MAX_FLOW_STEPS = 20


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def loopback_client_kwargs() -> dict[str, Any]:
    """httpx.Client (and authlib OAuth2Client) options for talking to the test server.

    Ignores proxy variables from the environment (the server is on loopback) and reuses one
    SSL context: building a client otherwise reloads the CA bundle, about 70 ms each time.
    """
    return {"verify": _ssl_context(), "trust_env": False}


class OidcServerError(RuntimeError):
    """The test server could not be installed, started or stopped."""


class AuthorizationFlowError(RuntimeError):
    """The authorization request did not end in a redirect carrying a code."""

    def __init__(self, message: str, *, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


@dataclass
class OidcServer:
    """A running test server. ``stop()`` it, or use it as a context manager."""

    issuer: str
    port: int
    metadata: dict[str, Any]
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _log_file: IO[bytes] = field(repr=False)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorize_url(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    @property
    def token_url(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def revocation_url(self) -> str:
        return str(self.metadata["revocation_endpoint"])

    @property
    def introspection_url(self) -> str:
        return str(self.metadata["introspection_endpoint"])

    def log_text(self) -> str:
        """What the server printed so far (warnings, grant errors): useful in assertions."""
        self._log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``). Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        if not self._log_file.closed:
            self._log_file.close()

    def __enter__(self) -> OidcServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _pinned_provider_version(server_dir: Path) -> str:
    package = json.loads((server_dir / "package.json").read_text(encoding="utf-8"))
    return str(package["dependencies"][PROVIDER_PACKAGE])


def _installed_provider_version(server_dir: Path) -> str | None:
    manifest = server_dir / "node_modules" / PROVIDER_PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OidcServerError(f"`{name}` is not on PATH; the OAuth test server needs Node.js")
    return path


@contextlib.contextmanager
def _install_lock(server_dir: Path) -> Iterator[None]:
    """Serialise ``npm ci`` between processes (pytest-xdist workers) sharing ``server_dir``."""
    digest = hashlib.sha256(str(server_dir).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"conveyor-oidc-npm-{digest}.lock"
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_node_modules(server_dir: Path = SERVER_DIR, *, timeout_s: float = 300.0) -> None:
    """Run ``npm ci`` unless node_modules already holds the pinned oidc-provider. Idempotent."""
    pinned = _pinned_provider_version(server_dir)
    if _installed_provider_version(server_dir) == pinned:
        return
    npm = _require_tool("npm")
    with _install_lock(server_dir):
        if _installed_provider_version(server_dir) == pinned:
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=server_dir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise OidcServerError(
                f"npm ci in {server_dir} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
    installed = _installed_provider_version(server_dir)
    if installed != pinned:
        raise OidcServerError(f"npm ci installed {PROVIDER_PACKAGE} {installed}, pinned {pinned}")


def _read_ready_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fetch_discovery(http: httpx.Client, issuer: str) -> dict[str, Any] | None:
    try:
        response = http.get(f"{issuer}/.well-known/openid-configuration", timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    document = response.json()
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        return None
    return document


def start_oidc_server(
    workdir: Path,
    *,
    clients: list[dict[str, Any]],
    rotate_refresh_tokens: bool,
    access_token_ttl_s: int,
    refresh_token_ttl_s: int | None = None,
    strict_client_auth: bool = True,
    server_dir: Path = SERVER_DIR,
    # Generous: once, on a CI run with every core busy, node had not started listening
    # after 30 s (2026-12-02); the wait ends as soon as it does.
    startup_timeout_s: float = 120.0,
) -> OidcServer:
    """Start the test server on a free 127.0.0.1 port and wait for its discovery document.

    ``workdir`` is a scratch directory (created if missing) for this run's log and ready
    files; the node project itself is ``server_dir`` (this file's directory), where
    ``npm ci`` is run first if its node_modules lacks the pinned oidc-provider.

    ``clients`` are oidc-provider client metadata dicts (``client_id``, ``client_secret``,
    ``redirect_uris``, ``token_endpoint_auth_method``, ...); ``grant_types`` defaults to
    authorization_code + refresh_token and ``response_types`` to code.

    With ``strict_client_auth`` (default) a client must authenticate exactly by its registered
    method, client_secret_basic or client_secret_post, as real providers demand; oidc-provider
    alone would accept either.
    """
    ensure_node_modules(server_dir)
    node = _require_tool("node")
    workdir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    ready_file = workdir / f"oidc-server-{run_id}.ready.json"
    log_path = workdir / f"oidc-server-{run_id}.log"
    config: dict[str, Any] = {
        "clients": clients,
        "rotateRefreshTokens": rotate_refresh_tokens,
        "accessTokenTtl": access_token_ttl_s,
        "strictClientAuth": strict_client_auth,
        "readyFile": str(ready_file),
    }
    if refresh_token_ttl_s is not None:
        config["refreshTokenTtl"] = refresh_token_ttl_s
    env = {
        **os.environ,
        "OIDC_SERVER_CONFIG": json.dumps(config),
        "OIDC_EXIT_ON_STDIN_CLOSE": "1",
        "NODE_ENV": "test",
    }
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [node, str(server_dir / "server.mjs"), "--port", "0"],
        cwd=server_dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        issuer, port, metadata = _wait_until_ready(process, ready_file, log_path, startup_timeout_s)
    except BaseException:
        process.kill()
        process.wait()
        log_file.close()
        raise
    return OidcServer(
        issuer=issuer,
        port=port,
        metadata=metadata,
        log_path=log_path,
        process=process,
        _log_file=log_file,
    )


def _log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(
    process: subprocess.Popen[bytes], ready_file: Path, log_path: Path, timeout_s: float
) -> tuple[str, int, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(**loopback_client_kwargs()) as http:
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                raise OidcServerError(
                    f"OAuth test server exited with {code} during startup ({log_path}):\n"
                    f"{_log_tail(log_path)}"
                )
            ready = _read_ready_file(ready_file)
            if ready is not None:
                issuer = str(ready["issuer"])
                metadata = _fetch_discovery(http, issuer)
                if metadata is not None:
                    return issuer, int(ready["port"]), metadata
            time.sleep(0.05)
    raise OidcServerError(
        f"OAuth test server not ready after {timeout_s:.0f}s ({log_path}):\n{_log_tail(log_path)}"
    )


@contextlib.contextmanager
def oidc_server(
    workdir: Path,
    *,
    clients: list[dict[str, Any]],
    rotate_refresh_tokens: bool,
    access_token_ttl_s: int,
    refresh_token_ttl_s: int | None = None,
    strict_client_auth: bool = True,
    server_dir: Path = SERVER_DIR,
) -> Iterator[OidcServer]:
    """``start_oidc_server`` as a context manager (for pytest fixtures); stops on exit."""
    server = start_oidc_server(
        workdir,
        clients=clients,
        rotate_refresh_tokens=rotate_refresh_tokens,
        access_token_ttl_s=access_token_ttl_s,
        refresh_token_ttl_s=refresh_token_ttl_s,
        strict_client_auth=strict_client_auth,
        server_dir=server_dir,
    )
    try:
        yield server
    finally:
        server.stop()


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    """Collects the forms of a page with their named input fields and default values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._current = _Form(
                action=attributes.get("action", ""),
                method=attributes.get("method", "get").lower(),
            )
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and "name" in attributes:
            self._current.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _interaction_form(html: str) -> _Form:
    parser = _FormParser()
    parser.feed(html)
    for form in parser.forms:
        if form.method == "post" and "prompt" in form.fields:
            return form
    raise AuthorizationFlowError(f"no interaction form in page: {html[:500]!r}")


def _same_endpoint(url: str, redirect_uri: str) -> bool:
    a, b = urlsplit(url), urlsplit(redirect_uri)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def _code_from_redirect(location: str, *, state: str, issuer: str) -> str:
    params = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    if "error" in params:
        description = params.get("error_description", "")
        raise AuthorizationFlowError(
            f"authorization failed: {params['error']}: {description}", error=params["error"]
        )
    if params.get("state") != state:
        raise AuthorizationFlowError(f"state mismatch: sent {state!r}, got {params.get('state')!r}")
    if "iss" in params and params["iss"] != issuer:
        raise AuthorizationFlowError(f"iss mismatch: expected {issuer!r}, got {params['iss']!r}")
    if "code" not in params:
        raise AuthorizationFlowError(f"redirect without code: {location}")
    return params["code"]


def obtain_authorization_code(
    server: OidcServer,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    code_challenge: str | None = None,
    login: str = DEFAULT_LOGIN,
    timeout_s: float = 10.0,
) -> str:
    """Run the authorization-code front channel over plain HTTP and return the ``code``.

    Sends the authorization request, signs in as ``login`` on the development login form,
    grants consent, and reads the code from the final redirect to ``redirect_uri`` (which is
    never requested). With ``code_challenge`` the request carries PKCE with method S256.
    Raises ``AuthorizationFlowError`` on an error redirect, an error page or a state mismatch.
    """
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
    }
    if code_challenge is not None:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    target = follow_authorization(
        f"{server.authorize_url}?{urlencode(params)}",
        redirect_uri=redirect_uri,
        login=login,
        timeout_s=timeout_s,
    )
    return _code_from_redirect(target, state=state, issuer=server.issuer)


def follow_authorization(
    authorize_url: str,
    *,
    redirect_uri: str,
    login: str = DEFAULT_LOGIN,
    timeout_s: float = 10.0,
) -> str:
    """Drive the front channel from a complete authorization URL (e.g. one an application
    built, with its own state and PKCE) and return the final redirect URL to ``redirect_uri``
    with its query (code, state, iss or error), without requesting it."""
    with httpx.Client(
        follow_redirects=False, timeout=timeout_s, **loopback_client_kwargs()
    ) as http:
        response = http.get(authorize_url)
        for _ in range(_MAX_FLOW_STEPS):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if _same_endpoint(target, redirect_uri):
                    return target
                response = http.get(target)
            elif response.status_code == 200 and "html" in response.headers.get("content-type", ""):
                form = _interaction_form(response.text)
                data = dict(form.fields)
                if data["prompt"] == "login":
                    data.update(login=login, password="any-password")
                response = http.post(urljoin(str(response.url), form.action), data=data)
            else:
                raise AuthorizationFlowError(
                    f"unexpected {response.status_code} from {response.url}: {response.text[:500]}",
                    error=_error_code(response),
                )
    raise AuthorizationFlowError(f"no redirect to {redirect_uri} after {_MAX_FLOW_STEPS} steps")


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body["error"]) if isinstance(body, dict) and "error" in body else None
