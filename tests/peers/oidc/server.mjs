// authpulse test peer: a real OpenID provider (oidc-provider), bound to 127.0.0.1 only.
//
//   node server.mjs [--port N]      (or env PORT=N; 0 or unset = pick a free port)
//
// Once listening it prints exactly one line to stdout:
//   listening on http://127.0.0.1:<port>
// and the issuer is that same URL. Everything else (oidc-provider notices and
// warnings, the access log, errors) goes to stderr. SIGTERM/SIGINT close the
// server and exit 0.
//
// Clients:
//   probe-cc   confidential, client_secret_basic/post, grant client_credentials, scope api:read
//              secret: env OIDC_PEER_CC_SECRET (default "probe-cc-secret")
//   probe-web  confidential, authorization_code + refresh_token,
//              redirect_uri https://probe.invalid/cb, secret "probe-web-secret"
// Features: devInteractions (any login name is accepted, it becomes the sub),
// introspection, revocation, clientCredentials, userinfo.
// Signing keys: a fresh RS256 + ES256 pair generated in memory at every start.

import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

// oidc-provider writes its "NOTICE"s with console.info (stdout). Keep stdout for
// the single "listening on" line a harness waits for: everything else -> stderr.
console.info = console.error;
console.log = console.error;

function parsePort(argv, env) {
  let raw = env.PORT ?? '0';
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--port') {
      if (i + 1 >= argv.length) fail('--port needs a value');
      raw = argv[i + 1];
      i += 1;
    } else if (arg.startsWith('--port=')) {
      raw = arg.slice('--port='.length);
    } else if (arg === '-h' || arg === '--help') {
      process.stderr.write('usage: node server.mjs [--port N]   (env PORT; 0 = free port)\n');
      process.exit(0);
    } else {
      fail(`unknown argument: ${arg}`);
    }
  }
  if (raw === '') raw = '0';
  if (!/^\d+$/.test(raw) || Number(raw) > 65535) fail(`invalid port: ${raw}`);
  return Number(raw);
}

function fail(msg) {
  process.stderr.write(`oidc peer: ${msg}\n`);
  process.exit(2);
}

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  // No kid: oidc-provider derives it from the JWK thumbprint, so a restarted
  // peer (new keys) never reuses a kid.
  return { keys: [{ ...rsa, alg: 'RS256', use: 'sig' }, { ...ec, alg: 'ES256', use: 'sig' }] };
}

const port = parsePort(process.argv.slice(2), process.env);
const ccSecret = process.env.OIDC_PEER_CC_SECRET || 'probe-cc-secret';

// The issuer needs the real port, so listen first and attach the provider after.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end('starting\n');
};
const server = http.createServer((req, res) => handler(req, res));

// Installed before the (slow-ish) key generation and provider setup, so a
// stop request at any moment exits 0.
let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`oidc peer: ${signal}, closing\n`);
  if (!server.listening) process.exit(0);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Never hang on shutdown.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.on('error', (err) => {
  process.stderr.write(`oidc peer: server error: ${err.stack || err}\n`);
  process.exit(1);
});

// Imported only now (it takes a moment) so that the signal handlers are already in place.
const { default: Provider } = await import('oidc-provider');

await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

const configuration = {
  clients: [
    {
      client_id: 'probe-cc',
      client_secret: ccSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api:read',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'probe-web',
      client_secret: 'probe-web-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['https://probe.invalid/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Static scopes: advertised in scopes_supported and checked against each
  // client's allow-list.
  scopes: ['openid', 'offline_access', 'profile', 'email', 'api:read'],
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, name: `Probe User ${sub}`, email: `${sub}@probe.invalid`, email_verified: true };
      },
    };
  },
  jwks: signingKeys(),
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true, allowedPolicy: async () => true },
    userinfo: { enabled: true },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
  },
  clientBasedCORS: () => true,
  // Plain-text errors: easier to read from a test than the default HTML page.
  async renderError(ctx, out) {
    ctx.type = 'text/plain; charset=utf-8';
    ctx.body = `${Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n')}\n`;
  },
};

const provider = new Provider(issuer, configuration);

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`oidc peer: server_error on ${ctx.method} ${ctx.path}: ${err.stack || err}\n`);
});

const callback = provider.callback();
handler = (req, res) => {
  const started = Date.now();
  res.on('finish', () => {
    process.stderr.write(`${new Date().toISOString()} ${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)\n`);
  });
  callback(req, res);
};

process.stdout.write(`listening on ${issuer}\n`);
