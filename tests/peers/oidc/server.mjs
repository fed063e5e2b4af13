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
//   probe-cc-post  like probe-cc but client_secret_post, secret "probe-cc-post-secret"
//   probe-pkjwt    private_key_jwt (RS256 or ES256), grant client_credentials, scope api:read;
//              registered only when env OIDC_PEER_PKJWT_PUBLIC_KEYS holds its public key(s)
//              (PEM "PUBLIC KEY" blocks, concatenated): tests generate the key pair
//   probe-idf  like probe-web, with the pages of an identifier-first IdP: the username on one
//              page ("Continue"), the password on the next (username hidden), and a consent
//              page whose buttons are, in this order, Deny, "Switch user" (value=logout, which
//              ends the sign-in) and Accept
//   probe-ropc confidential, client_secret_basic, secret "probe-ropc-secret", grants password +
//              refresh_token, scopes openid offline_access profile email api:read
// Features: devInteractions behind a login guard (users alice, and bob with a TOTP
// code: see guardLogin below; the login becomes the sub),
// introspection, revocation, clientCredentials, userinfo, resourceIndicators
// (JWT access tokens of probe-cc carry groups ["deployers"], of probe-cc-post ["viewers"])
// (resource urn:authpulse:api -> JWT access token, aud urn:authpulse:api, scope api:read;
// any other resource is invalid_target; no resource -> opaque token as before).
// Grant type "password" (ROPC, which oidc-provider does not ship): one account,
// username "alice", password env OIDC_PEER_USER_PASSWORD (default "alice-password");
// anything else is invalid_grant. The ID token it issues carries at_hash.
// Signing keys: a fresh RS256 + ES256 pair generated in memory at every start.

import http from 'node:http';
import {
  createHmac, createPublicKey, generateKeyPairSync, randomBytes,
} from 'node:crypto';

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
const ropcUser = 'alice';
const ropcPassword = process.env.OIDC_PEER_USER_PASSWORD || 'alice-password';
const apiResource = 'urn:authpulse:api';

// Public keys of the private_key_jwt client, as JWKs.
function pkjwtKeys(pems) {
  if (!pems) return [];
  return pems.split(/(?<=-----END PUBLIC KEY-----)/).map((p) => p.trim()).filter(Boolean).map((pem) => {
    const jwk = createPublicKey(pem).export({ format: 'jwk' });
    return { ...jwk, alg: jwk.kty === 'RSA' ? 'RS256' : 'ES256', use: 'sig' };
  });
}
const pkjwtJwks = pkjwtKeys(process.env.OIDC_PEER_PKJWT_PUBLIC_KEYS);

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
const { default: Provider, errors } = await import('oidc-provider');

await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const actualPort = server.address().port;
const issuer = `http://127.0.0.1:${actualPort}`;

// Group claims in JWT access tokens, for the coordinator's OIDC API access
// test: client-credentials tokens of probe-cc are "deployers", of
// probe-cc-post "viewers".
const groupsByClient = { 'probe-cc': ['deployers'], 'probe-cc-post': ['viewers'] };

const configuration = {
  async extraTokenClaims(ctx, token) {
    const groups = groupsByClient[token.clientId];
    return groups ? { groups } : undefined;
  },
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
    {
      // Identifier-first login and a consent page with Deny / Switch user /
      // Accept (see identifierFirst below); otherwise like probe-web.
      client_id: 'probe-idf',
      client_secret: 'probe-web-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['https://probe.invalid/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'probe-cc-post',
      client_secret: 'probe-cc-post-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api:read',
      token_endpoint_auth_method: 'client_secret_post',
    },
    ...(pkjwtJwks.length === 0 ? [] : [{
      client_id: 'probe-pkjwt',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api:read',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: pkjwtJwks },
    }]),
    {
      client_id: 'probe-ropc',
      client_secret: 'probe-ropc-secret',
      grant_types: ['password', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      scope: 'openid offline_access profile email api:read',
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
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (resourceIndicator === apiResource) {
          return {
            scope: 'api:read',
            audience: apiResource,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        }
        throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
      },
    },
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

// ROPC (grant_type=password) for the test account only. Issues a grant, an
// access token, a refresh token (with offline_access) and an ID token (with
// openid) the way oidc-provider's own grants do, so refresh_token,
// introspection, revocation and userinfo work on them.
provider.registerGrantType('password', async (ctx) => {
  const { client, params } = ctx.oidc;
  if (!params.username || !params.password) {
    throw new errors.InvalidRequest('username and password are required');
  }
  if (params.username !== ropcUser || params.password !== ropcPassword) {
    throw new errors.InvalidGrant('invalid username or password');
  }
  const requested = (params.scope || 'openid').split(' ').filter(Boolean);
  const allowed = new Set((client.scope || '').split(' '));
  const denied = requested.filter((s) => !allowed.has(s));
  if (denied.length) throw new errors.InvalidScope('scope not allowed for this client', denied.join(' '));
  const scope = requested.join(' ');
  const authTime = Math.floor(Date.now() / 1000);

  const grant = new provider.Grant({ accountId: ropcUser, clientId: client.clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const account = await configuration.findAccount(ctx, ropcUser);
  ctx.oidc.entity('Grant', grant);
  ctx.oidc.entity('Account', account);

  const at = new provider.AccessToken({ accountId: ropcUser, client, grantId, gty: 'password', scope });
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  let refreshToken;
  if (requested.includes('offline_access')) {
    const rt = new provider.RefreshToken({
      accountId: ropcUser, client, grantId, gty: 'password', scope, rotations: 0, authTime,
    });
    ctx.oidc.entity('RefreshToken', rt);
    refreshToken = await rt.save();
  }

  let idToken;
  if (requested.includes('openid')) {
    const claims = await account.claims('id_token', scope, {}, []);
    const token = new provider.IdToken({ ...claims, auth_time: authTime }, { ctx });
    token.scope = scope;
    token.set('at_hash', accessToken);
    idToken = await token.issue({ use: 'idtoken' });
  }

  ctx.body = {
    access_token: accessToken,
    expires_in: at.expiration,
    token_type: 'Bearer',
    scope,
    ...(refreshToken ? { refresh_token: refreshToken } : {}),
    ...(idToken ? { id_token: idToken } : {}),
  };
}, ['username', 'password', 'scope']);

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`oidc peer: server_error on ${ctx.method} ${ctx.path}: ${err.stack || err}\n`);
});

// Login guard for browserless logins (the `authorization_code` tests).
// devInteractions accept any login and ignore the password; like a real IdP,
// only these accounts get through, with the right password:
//   alice  password env OIDC_PEER_USER_PASSWORD (default "alice-password")
//   bob    password env OIDC_PEER_BOB_PASSWORD (default "bob-password"), then a
//          one-time code (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, +-1 step)
//          for the base32 secret env OIDC_PEER_TOTP_SECRET
//          (default "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
// A wrong password re-renders the login form (same shape as oidc-provider's)
// with an error, a wrong code the code form, both with status 200 as most
// IdPs do. Bob's code form posts to /interaction/<uid>/otp; a correct code is
// then handed to oidc-provider as bob's login.
const loginUsers = {
  alice: ropcPassword,
  bob: process.env.OIDC_PEER_BOB_PASSWORD || 'bob-password',
};
const totpSecret = process.env.OIDC_PEER_TOTP_SECRET || 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
const pendingTotp = new Map(); // interaction uid -> account waiting for its code

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) fail(`OIDC_PEER_TOTP_SECRET is not base32 (character ${c})`);
    value = ((value << 5) | i) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
const totpKey = base32Decode(totpSecret);

function totpCode(counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', totpKey).update(msg).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1e6).padStart(6, '0');
}

function totpValid(code) {
  const step = Math.floor(Date.now() / 1000 / 30);
  return [-1, 0, 1].some((d) => totpCode(step + d) === code);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>`
    + `<body><div class="container"><h1>${title}</h1>${body}</div></body></html>`;
}

function loginPage(action, login, error) {
  return page('Sign-in', `<p class="error" role="alert">${escapeHtml(error)}</p>
<form autocomplete="off" action="${action}" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" placeholder="Enter any login" value="${escapeHtml(login)}">
  <input required type="password" name="password" placeholder="and password" autofocus="on">
  <button type="submit" class="login login-submit">Sign-in</button>
</form>`);
}

function otpPage(action, error) {
  const err = error ? `<p class="error" role="alert">${escapeHtml(error)}</p>\n` : '';
  return page('Two-step verification', `${err}<form autocomplete="off" action="${action}" method="post">
  <label for="otp">Code from your authenticator app</label>
  <input required type="text" id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" autofocus="on">
  <button type="submit" class="login login-submit">Verify</button>
</form>`);
}

// The identifier-first pages of probe-idf.
function identifierPage(action, login = '', error = '') {
  const err = error ? `<div class="alert alert-danger" role="alert">${escapeHtml(error)}</div>\n` : '';
  return page('Sign in', `${err}<form action="${action}/identify" method="post">
  <label for="username">Username</label>
  <input type="text" id="username" name="username" autocomplete="username" value="${escapeHtml(login)}" required>
  <label><input type="checkbox" name="remember" value="yes" checked> Remember me</label>
  <button type="submit" name="action" value="continue">Continue</button>
</form>
<p><a href="/signup">Create an account</a></p>`);
}

function passwordPage(action, login, error = '') {
  const err = error ? `<div class="alert alert-danger" role="alert">${escapeHtml(error)}</div>\n` : '';
  return page('Enter your password', `${err}<p>Signing in as ${escapeHtml(login)}</p>
<form action="${action}" method="post">
  <input type="hidden" name="prompt" value="login">
  <input type="hidden" name="flow" value="identifier-first">
  <input type="hidden" name="login" value="${escapeHtml(login)}">
  <input type="password" name="password" autocomplete="current-password" required>
  <button type="submit">Sign in</button>
</form>`);
}

function decisionPage(action) {
  return page('Authorize probe-idf', `<p>probe-idf wants to access your account.</p>
<form action="${action}/decide" method="post">
  <button type="submit" name="decision" value="deny">Deny</button>
  <button type="submit" name="decision" value="logout">Switch user</button>
  <button type="submit" name="decision" value="accept">Accept</button>
</form>`);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function guardLogin(inner) {
  return async (req, res) => {
    const m = /^\/interaction\/([^/?]+)(\/otp|\/identify|\/decide)?(\?.*)?$/.exec(req.url);
    if (!m) return inner(req, res);
    const [, uid, sub] = m;
    const otp = sub === '/otp';
    const action = `/interaction/${uid}`;
    const html = (status, body) => {
      res.statusCode = status;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.setHeader('cache-control', 'no-store');
      res.end(body);
    };
    if (req.method === 'GET' && !sub) {
      let details;
      try {
        details = await provider.interactionDetails(req, res);
      } catch {
        return inner(req, res);
      }
      if (details.params.client_id !== 'probe-idf') return inner(req, res);
      if (details.prompt.name === 'login') return html(200, identifierPage(action));
      if (details.prompt.name === 'consent') return html(200, decisionPage(action));
      return inner(req, res);
    }
    if (req.method !== 'POST') return inner(req, res);
    let raw;
    try {
      raw = await readBody(req);
    } catch {
      return html(400, page('Sign-in', '<p class="error">Could not read the request.</p>'));
    }
    const form = new URLSearchParams(raw);
    if (sub === '/identify') {
      const login = form.get('username') || '';
      if (!Object.hasOwn(loginUsers, login)) {
        return html(200, identifierPage(action, login, 'We could not find an account with that username.'));
      }
      return html(200, passwordPage(action, login));
    }
    if (sub === '/decide') {
      const decision = form.get('decision');
      if (decision === 'deny') {
        return provider.interactionFinished(req, res, {
          error: 'access_denied', error_description: 'End-User denied the request',
        }, { mergeWithLastSubmission: false });
      }
      if (decision === 'logout') {
        return html(200, page('Signed out', '<p>You have been signed out. Close this window to continue.</p>'));
      }
      if (decision !== 'accept') return html(400, page('Consent', '<p class="error">Unknown decision.</p>'));
      raw = 'prompt=consent';
      req.url = action;
    } else if (otp) {
      const account = pendingTotp.get(uid);
      if (!account) return html(400, page('Sign-in', '<p class="error">No sign-in in progress.</p>'));
      if (!totpValid(form.get('otp') || '')) return html(200, otpPage(`${action}/otp`, 'Invalid code.'));
      pendingTotp.delete(uid);
      raw = new URLSearchParams({ prompt: 'login', login: account }).toString();
      req.url = action;
    } else if (form.get('prompt') === 'login') {
      const login = form.get('login') || '';
      if (!Object.hasOwn(loginUsers, login) || form.get('password') !== loginUsers[login]) {
        if (form.get('flow') === 'identifier-first') {
          return html(200, passwordPage(action, login, 'Wrong password. Try again.'));
        }
        return html(200, loginPage(action, login, 'Invalid username or password.'));
      }
      if (login === 'bob') {
        pendingTotp.set(uid, login);
        return html(200, otpPage(`${action}/otp`));
      }
    }
    // The stream is consumed: oidc-provider reads an already-read body from req.body.
    req.body = raw;
    return inner(req, res);
  };
}

const callback = guardLogin(provider.callback());
handler = (req, res) => {
  const started = Date.now();
  res.on('finish', () => {
    process.stderr.write(`${new Date().toISOString()} ${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms)\n`);
  });
  callback(req, res);
};

process.stdout.write(`listening on ${issuer}\n`);
