// A local OpenID provider for crates/cairn/tests/it/sso_oidc.rs: panva's oidc-provider
// (OpenID Certified) with one static confidential client, PKCE required, and an
// auto-login that signs in the account named by `login_hint` (no consent screen).
// Env: PORT, REDIRECT_URI, KID (the signing key's id; a restart with another KID is a
// key rotation), INTERACTIVE=1 (for e2e/sso.test.mjs: instead of the auto-login, the
// provider's own sign-in page, a user name and password form checked against USERS).
// `POST /__mode/NAME` makes the next token responses carry a bad ID token re-signed by
// this provider's key (iss, aud, exp, nonce, azp, multiaud) or by a key it never published
// (kid); `normal` stops that.
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, SignJWT, decodeJwt } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const person = (email) => ({ email, email_verified: true, preferred_username: email });
const USERS = {
  'u-admin': person('ada@acme.test'),
  'u-backup': person('bob@acme.test'),
  'u-stranger': person('eve@elsewhere.test'),
  'u-carol': person('carol@acme.test'),
  'u-dave': person('dave@acme.test'),
};
// The passwords of the interactive sign-in page (INTERACTIVE=1): the provider's, not Cairn's.
const PASSWORDS = {
  'u-admin': 'ada idp password', 'u-backup': 'bob idp password', 'u-stranger': 'eve idp password',
  'u-carol': 'carol idp password', 'u-dave': 'dave idp password',
};
const interactive = process.env.INTERACTIVE === '1';

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function loginPage(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test IdP</h1><p>Sign in to continue to Cairn.</p>
${error ? `<p role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></body></html>`;
}

// A form body, at most 4 KiB.
async function formBody(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 4096) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

async function key(kid) {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { jwk: { ...jwk, kid, alg: 'RS256', use: 'sig' }, privateKey };
}
const signing = await key(process.env.KID || 'k1');
const alien = await key('alien');

const config = {
  clients: [{
    client_id: 'cairn', client_secret: 'test-secret', redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing.jwk] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'] },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  async findAccount(ctx, sub) {
    const u = USERS[sub];
    return u && { accountId: sub, claims: async () => ({ sub, ...u }) };
  },
  interactions: { url: (ctx, i) => (interactive ? `/interaction/${i.uid}` : `/auto/${i.uid}`) },
  async loadExistingGrant(ctx) {
    const g = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    g.addOIDCScope(ctx.oidc.params.scope);
    await g.save();
    return g;
  },
};

const p = new Provider(issuer, config);
let mode = 'normal';
p.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/__mode\/([a-z]+)$/);
  if (m && ctx.method === 'POST') { mode = m[1]; ctx.body = { mode }; return; }
  const form = interactive && ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (form) {
    const { uid } = await p.interactionDetails(ctx.req, ctx.res);
    ctx.type = 'html';
    if (ctx.method === 'GET') { ctx.body = loginPage(uid); return; }
    const f = await formBody(ctx.req);
    const sub = Object.keys(USERS).find((k) => USERS[k].email === f.get('username'));
    if (!sub || PASSWORDS[sub] !== f.get('password')) {
      ctx.status = 401;
      ctx.body = loginPage(uid, 'Wrong user name or password.');
      return;
    }
    return p.interactionFinished(ctx.req, ctx.res, { login: { accountId: sub } }, { mergeWithLastSubmission: false });
  }
  const a = !interactive && ctx.path.match(/^\/auto\/([^/]+)$/);
  if (a) {
    const { params } = await p.interactionDetails(ctx.req, ctx.res);
    if (!USERS[params.login_hint]) return p.interactionFinished(ctx.req, ctx.res, { error: 'access_denied' });
    return p.interactionFinished(ctx.req, ctx.res, { login: { accountId: params.login_hint } }, { mergeWithLastSubmission: false });
  }
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && mode !== 'normal' && ctx.body && ctx.body.id_token) {
    const claims = decodeJwt(ctx.body.id_token);
    const now = Math.floor(Date.now() / 1000);
    let k = signing;
    if (mode === 'iss') claims.iss = 'http://127.0.0.1:1/other';
    if (mode === 'aud') claims.aud = 'someone-else';
    if (mode === 'exp') { claims.iat = now - 3600; claims.exp = now - 1800; }
    if (mode === 'nonce') claims.nonce = 'not-the-nonce';
    if (mode === 'azp') claims.azp = 'someone-else';
    if (mode === 'multiaud') { claims.aud = ['cairn', 'someone-else']; delete claims.azp; }
    if (mode === 'kid') k = alien;
    ctx.body = { ...ctx.body, id_token: await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: k.jwk.kid }).sign(k.privateKey) };
  }
});
p.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
