// Loopback OAuth 2.0 / OpenID Connect authorization server for Conveyor's integration tests.
//
// Built on the `oidc-provider` npm package. Test-only: plain HTTP on 127.0.0.1, in-memory
// storage, throw-away signing (ES256) and cookie keys generated at start, and the package's
// development interactions (login with any username, one-click consent) so that a test can
// drive the authorization-code flow with a plain HTTP client. Endpoints: /auth, /token,
// /token/revocation, /token/introspection, discovery at /.well-known/openid-configuration.
// PKCE (S256) is accepted, not required; refresh tokens are issued to every client allowed
// the refresh_token grant, offline_access or not.
//
// Usage:
//   OIDC_SERVER_CONFIG='{"clients": [...], ...}' node server.mjs [--port N]
//
// Port: `--port N` (or `--port=N`), else env OIDC_PORT, else the issuer's port, else 0 (an
// ephemeral port chosen by the OS). The server always binds 127.0.0.1.
//
// OIDC_SERVER_CONFIG (JSON object):
//   issuer               optional; default http://127.0.0.1:<bound port>
//   clients              list of oidc-provider client metadata objects (snake_case);
//                        grant_types defaults to ["authorization_code", "refresh_token"],
//                        response_types to ["code"]
//   accessTokenTtl       access token lifetime in seconds (default 3600)
//   refreshTokenTtl      refresh token lifetime in seconds (default 14 days)
//   rotateRefreshTokens  true: every refresh returns a new refresh token and the old one is
//                        consumed (re-using it fails and revokes the grant);
//                        false: the same refresh token stays valid (default false)
//   strictClientAuth     true (default): a client registered with client_secret_basic must
//                        authenticate with HTTP Basic and one registered with
//                        client_secret_post with form fields, else invalid_client (401).
//                        oidc-provider itself accepts either of the two for both, but real
//                        providers do not, and the tests must notice a client sending
//                        credentials the wrong way.
//   readyFile            optional path; once listening, {"issuer", "port", "pid"} is written
//                        there (atomically, via rename)
//
// With env OIDC_EXIT_ON_STDIN_CLOSE=1 the server also exits when its stdin reaches EOF, so a
// parent that dies without stopping it (a killed test run) does not leave it behind.
//
// A JSON line {"event": "ready", ...} is also printed on stdout once listening.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const DEFAULT_ACCESS_TOKEN_TTL = 3600;
const DEFAULT_REFRESH_TOKEN_TTL = 14 * 24 * 60 * 60;

function fail(message) {
  process.stderr.write(`oauth test server: ${message}\n`);
  process.exit(2);
}

function parsePortArg(argv) {
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--port') {
      return argv[i + 1];
    }
    if (arg.startsWith('--port=')) {
      return arg.slice('--port='.length);
    }
  }
  return undefined;
}

function positiveInt(value, name, fallback) {
  if (value === undefined || value === null) {
    return fallback;
  }
  if (!Number.isInteger(value) || value <= 0) {
    fail(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function loadConfig() {
  const raw = process.env.OIDC_SERVER_CONFIG;
  if (!raw) {
    fail('env OIDC_SERVER_CONFIG (JSON) is required');
  }
  let config;
  try {
    config = JSON.parse(raw);
  } catch (err) {
    fail(`OIDC_SERVER_CONFIG is not valid JSON: ${err.message}`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    fail('OIDC_SERVER_CONFIG must be a JSON object');
  }
  if (!Array.isArray(config.clients) || config.clients.length === 0) {
    fail('OIDC_SERVER_CONFIG.clients must be a non-empty list');
  }
  return {
    issuer: config.issuer,
    clients: config.clients,
    accessTokenTtl: positiveInt(config.accessTokenTtl, 'accessTokenTtl', DEFAULT_ACCESS_TOKEN_TTL),
    refreshTokenTtl: positiveInt(
      config.refreshTokenTtl,
      'refreshTokenTtl',
      DEFAULT_REFRESH_TOKEN_TTL,
    ),
    rotateRefreshTokens: config.rotateRefreshTokens === true,
    strictClientAuth: config.strictClientAuth !== false,
    readyFile: config.readyFile,
  };
}

function choosePort(config) {
  const fromArgs = parsePortArg(process.argv.slice(2));
  const candidate = fromArgs ?? process.env.OIDC_PORT ?? (
    config.issuer ? new URL(config.issuer).port || undefined : undefined
  ) ?? '0';
  const port = Number(candidate);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`invalid port ${JSON.stringify(candidate)}`);
  }
  return port;
}

function signingKeys() {
  // A fresh P-256 key per run (an RSA key takes up to a second to generate on a busy machine);
  // ID tokens are signed ES256 by default. Nothing outlives the process.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig' }] };
}

function buildProvider(issuer, config) {
  const provider = new Provider(issuer, {
    clients: config.clients,
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    jwks: signingKeys(),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: true },
      revocation: {
        enabled: true,
        // A client may revoke only tokens issued to itself (RFC 7009 section 2.1).
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
    },
    // PKCE is accepted (S256 only, as oidc-provider implements it) but not demanded from
    // confidential clients, matching the SaaS providers the workers talk to.
    pkce: { required: () => false },
    scopes: ['openid', 'offline_access'],
    // Refresh tokens for every client allowed the refresh_token grant, with or without the
    // offline_access scope, and independent of the browser session.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    rotateRefreshToken: config.rotateRefreshTokens,
    ttl: {
      AccessToken: () => config.accessTokenTtl,
      AuthorizationCode: () => 60,
      IdToken: () => 3600,
      RefreshToken: () => config.refreshTokenTtl,
      Interaction: () => 600,
      Session: () => 3600,
      Grant: () => config.refreshTokenTtl,
    },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub }),
    }),
    clientBasedCORS: () => false,
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`server_error: ${err.stack ?? err}\n`);
  });
  for (const event of ['grant.error', 'authorization.error', 'revocation.error']) {
    provider.on(event, (ctx, err) => {
      process.stderr.write(`${event}: ${err.name}: ${err.message} ${err.error_detail ?? ''}\n`);
    });
  }
  return provider;
}

const CLIENT_AUTH_PATHS = new Set(['/token', '/token/revocation', '/token/introspection']);
const MAX_FORM_BYTES = 56 * 1024;

function readForm(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        reject(new Error('request body too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function basicClientId(authorization) {
  const match = /^basic\s+(\S+)$/i.exec(authorization ?? '');
  if (!match) {
    return undefined;
  }
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) {
    return undefined;
  }
  try {
    // RFC 6749 section 2.3.1: form-urlencoded before base64.
    return decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

function sendJson(res, status, body) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

// Wraps the provider's request handler: on the endpoints that authenticate clients, rejects a
// client_secret_basic / client_secret_post client that used the other of the two mechanisms.
// The form body is read here and handed on as req.body, which oidc-provider accepts in place
// of the stream (it logs a one-time warning about an upstream body parser).
function strictClientAuth(clients, inner) {
  const registered = new Map(
    clients.map((client) => [client.client_id, client.token_endpoint_auth_method ?? 'client_secret_basic']),
  );
  return async (req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    const contentType = (req.headers['content-type'] ?? '').toLowerCase();
    if (
      req.method !== 'POST'
      || !CLIENT_AUTH_PATHS.has(pathname)
      || !contentType.startsWith('application/x-www-form-urlencoded')
    ) {
      return inner(req, res);
    }
    let raw;
    try {
      raw = await readForm(req);
    } catch (err) {
      return sendJson(res, 400, { error: 'invalid_request', error_description: err.message });
    }
    req.body = raw;
    const form = new URLSearchParams(raw);
    const fromHeader = basicClientId(req.headers.authorization);
    let used;
    if (fromHeader !== undefined) {
      used = 'client_secret_basic';
    } else if (form.has('client_secret')) {
      used = 'client_secret_post';
    }
    const clientId = fromHeader ?? form.get('client_id');
    const expected = registered.get(clientId);
    const secretMethods = ['client_secret_basic', 'client_secret_post'];
    if (used && secretMethods.includes(expected) && used !== expected) {
      process.stderr.write(`strict client auth: ${clientId} used ${used}, registered ${expected}\n`);
      if (used === 'client_secret_basic') {
        res.setHeader('www-authenticate', 'Basic realm="conveyor-oauth-test-server"');
      }
      return sendJson(res, 401, {
        error: 'invalid_client',
        error_description: `client authentication must use ${expected}, not ${used}`,
      });
    }
    return inner(req, res);
  };
}

function announce(config, issuer, port) {
  const info = { issuer, port, pid: process.pid };
  if (config.readyFile) {
    const tmp = `${config.readyFile}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(info));
    renameSync(tmp, config.readyFile);
  }
  process.stdout.write(`${JSON.stringify({ event: 'ready', ...info })}\n`);
}

function main() {
  const config = loadConfig();
  const port = choosePort(config);

  // Listen first, build the provider second: with port 0 the issuer URL is only known once
  // the OS has picked the port, and no request can arrive before `handler` is set.
  let handler = (req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));

  server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));
  server.listen(port, '127.0.0.1', () => {
    const boundPort = server.address().port;
    const issuer = config.issuer ?? `http://127.0.0.1:${boundPort}`;
    const callback = buildProvider(issuer, config).callback();
    handler = config.strictClientAuth ? strictClientAuth(config.clients, callback) : callback;
    announce(config, issuer, boundPort);
  });

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (process.env.OIDC_EXIT_ON_STDIN_CLOSE === '1') {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

main();
