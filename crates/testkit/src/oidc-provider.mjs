// A real OpenID provider for Dropship's system tests: oidc-provider (installed into
// .stack/oidc by scripts/install-deps.sh) with one native client, a few users, JWT access
// tokens for the backend, refresh tokens, the device flow and the built-in login pages.
// Started by crates/testkit/src/oidc.rs, which passes everything in through the environment.
//
// Test-only control routes live outside the provider's paths, under /__testkit/.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} must be set`);
  return value;
};

// ESM imports ignore NODE_PATH, so the package is imported by its path.
const modules = env('OIDC_PROVIDER_MODULES');
const { default: Provider, errors } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider/lib/index.js')).href
);
// One store for every Provider instance: a key rotation builds a new instance, and grants,
// sessions and refresh tokens must survive it. (Each instance would otherwise create its own.)
const { createMemoryAdapter } = await import(
  pathToFileURL(path.join(modules, 'oidc-provider/lib/adapters/memory_adapter.js')).href
);

const port = Number(process.argv[2] ?? env('OIDC_PORT', '0'));
const clientId = env('OIDC_CLIENT_ID', 'dropship');
const audience = env('OIDC_AUDIENCE', 'urn:dropship:backend');
// Scope the backend's resource server offers; an access token carries the requested subset.
const apiScope = env('OIDC_API_SCOPE', 'dropship');
// [{ sub, email, name, groups, password }]
const users = JSON.parse(env('OIDC_USERS'));
const state = { accessTokenTtl: Number(env('OIDC_ACCESS_TOKEN_TTL', '300')) };

const DAY = 24 * 60 * 60;
const adapter = createMemoryAdapter();
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
let signingKeys = [newSigningKey()];

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
}

const userBySub = (sub) => users.find((u) => u.sub === sub);

function configuration() {
  return {
    adapter,
    clients: [{
      client_id: clientId,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      // A native client's loopback redirect matches on any port (RFC 8252 section 7.3).
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    }],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    responseTypes: ['code'],
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    cookies: { keys: cookieKeys },
    jwks: { keys: signingKeys },
    pkce: { required: () => true },
    async findAccount(_ctx, sub) {
      const user = userBySub(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          return { sub: user.sub, email: user.email, email_verified: true, name: user.name, groups: user.groups };
        },
      };
    },
    // The backend reads who is calling from the access token alone.
    async extraTokenClaims(_ctx, token) {
      const user = token.accountId && userBySub(token.accountId);
      return user ? { email: user.email, groups: user.groups } : undefined;
    },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== audience) {
            throw new errors.InvalidTarget(`unknown resource ${resource}`);
          }
          return {
            audience,
            scope: apiScope,
            accessTokenFormat: 'jwt',
            accessTokenTTL: state.accessTokenTtl,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? state.accessTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: 600,
      Grant: 30 * DAY,
      IdToken: 3600,
      Interaction: 3600,
      // A refresh token comes only with offline_access, which the authorization endpoint keeps
      // only with prompt=consent. oidc-provider's default, kept: this public client's refresh
      // token is rotated on every use, and reusing a rotated one revokes the whole grant.
      RefreshToken: 30 * DAY,
      Session: 30 * DAY,
    },
  };
}

const issuer = await listen();
let provider;
let handler;
startProvider();
// The ready line the test kit waits for.
console.log(`listening on ${issuer}`);

function startProvider() {
  provider = new Provider(issuer, configuration());
  for (const event of ['server_error', 'grant.error', 'authorization.error', 'end_session.error']) {
    provider.on(event, (_ctx, error) => console.error(`${event}:`, error));
  }
  handler = provider.callback();
}

function listen() {
  const server = http.createServer((req, res) => {
    route(req, res).catch((error) => {
      console.error('request failed:', error);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(error));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      resolve(`http://127.0.0.1:${server.address().port}`);
    });
  });
}

async function route(req, res) {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/__testkit/')) return control(req, res, url.pathname);
  // devInteractions' login page accepts any name and any password; this one checks both.
  if (req.method === 'POST' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
    const details = await provider.interactionDetails(req, res).catch(() => undefined);
    if (details?.prompt.name === 'login') return login(req, res);
  }
  return handler(req, res);
}

async function login(req, res) {
  const form = new URLSearchParams(await body(req));
  const user = users.find((u) => u.email === form.get('login') && u.password === form.get('password'));
  if (!user) {
    res.writeHead(401, { 'content-type': 'text/plain' });
    return res.end('wrong login or password');
  }
  return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
}

async function control(req, res, pathname) {
  const reply = (status, json) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(json));
  };
  if (req.method !== 'POST') return reply(405, { error: 'POST only' });
  if (pathname === '/__testkit/rotate-keys') {
    // The new key signs from now on; the old ones stay in the JWKS for tokens already out.
    signingKeys = [newSigningKey(), ...signingKeys];
    startProvider();
    return reply(200, { signing_kid: signingKeys[0].kid, kids: signingKeys.map((k) => k.kid) });
  }
  if (pathname === '/__testkit/access-token-ttl') {
    const seconds = Number(JSON.parse(await body(req)).seconds);
    if (!Number.isInteger(seconds) || seconds <= 0) return reply(400, { error: 'seconds must be a positive integer' });
    state.accessTokenTtl = seconds;
    return reply(200, { seconds });
  }
  return reply(404, { error: 'no such control route' });
}

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
