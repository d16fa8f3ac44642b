// Single sign-on in headless Chromium (issue 17): the browser signs in through a real
// OpenID provider's own sign-in page — npm `oidc-provider` (panva, OpenID Certified),
// crates/cairn/tests/it/idp/oidc/provider.mjs with INTERACTIVE=1, which shows a user
// name and password form and checks the password itself — and what SCIM does to an
// open session is seen on the browser's next request. Everything listens on 127.0.0.1.
//
// Environment: CAIRN_BIN (default ../target/debug/cairn), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOTS (default ../docs/screenshots).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { A11y } from './axe.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, process.env.CAIRN_BIN ?? '../target/debug/cairn');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.resolve(here, process.env.SCREENSHOTS ?? '../docs/screenshots');
const IDP_DIR = path.resolve(here, '../crates/cairn/tests/it/idp/oidc');
// The provider's accounts and passwords (provider.mjs); Ada is also a dashboard
// administrator of the tenant, the others are SCIM-provisioned backup accounts.
const ADA = { user: 'ada@acme.test', password: 'ada idp password' };
const BOB = { user: 'bob@acme.test', password: 'bob idp password' };
const CAROL = { user: 'carol@acme.test', password: 'carol idp password' };
const DAVE = { user: 'dave@acme.test', password: 'dave idp password' };
const STEP = 15_000; // the most any one wait may take

let dataDir, server, base, idp, issuer, tenant, token, browser;
const contexts = [];
// Cairn's pages reached through single sign-on, checked with axe-core (issue 22); the
// provider's own pages are not Cairn's and are not checked.
const a11y = new A11y();

function cli(args, input) {
  return execFileSync(BIN, ['--data-dir', dataDir, ...args], { input, encoding: 'utf8', timeout: 30_000 });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/// Spawns `cmd` and resolves once a line of its stdout matches `ready`.
function start(cmd, args, opts, ready, what) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    let err = '';
    const timer = setTimeout(() => { proc.kill(); reject(new Error(`${what} did not start: ${err}`)); }, 20_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(ready);
      if (m) { clearTimeout(timer); resolve({ proc, m }); }
    });
    proc.stderr.on('data', (d) => { err += d; });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited ${code}: ${err}`)); });
  });
}

async function stop(proc) {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
}

async function shot(p, name) {
  mkdirSync(SHOTS, { recursive: true });
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function scim(method, urlPath, body) {
  const res = await fetch(`${base}/scim/v2/${tenant}${urlPath}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/scim+json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function account(userName) {
  const r = await scim('POST', '/Users', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName, active: true,
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return r.json.id;
}

/// A fresh browser (no cookies of Cairn or of the provider), on the tenant's sign-in
/// link, through the provider's own page, back to Cairn; returns the page.
async function signInThroughIdp(who) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  contexts.push(ctx);
  ctx.setDefaultTimeout(STEP);
  const page = await ctx.newPage();
  await page.goto(`${base}/sso/${tenant}/login`);
  // The provider's page, not Cairn's: its own origin and form.
  await page.waitForURL((u) => u.href.startsWith(`${issuer}/interaction/`));
  await page.getByLabel('Username').fill(who.user);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  return page;
}

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} missing: run scripts/e2e (it builds the binary)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  assert.ok(existsSync(path.join(IDP_DIR, 'node_modules/oidc-provider')),
    `npm ci in ${IDP_DIR} first (scripts/e2e does)`);
  dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-e2e-sso-'));
  tenant = JSON.parse(cli(['tenant', 'create', '--name', 'Acme', '--json'])).id;
  cli(['scim', 'enable', '--tenant', tenant, '--account-size-gb', '50']);
  token = JSON.parse(cli(['scim', 'token', '--tenant', tenant, '--json'])).token;
  // Ada's local password is not the provider's: signing in through SSO never uses it.
  cli(['user', 'create', '--tenant', tenant, '--email', ADA.user, '--role', 'administrator',
    '--password-stdin'], 'a local password nobody types here\n');

  const cairnPort = await freePort();
  const idpPort = await freePort();
  base = `http://127.0.0.1:${cairnPort}`;
  issuer = `http://127.0.0.1:${idpPort}`;
  cli(['sso', 'oidc', '--tenant', tenant, '--issuer', issuer, '--client-id', 'cairn',
    '--client-secret-stdin'], 'test-secret\n');
  cli(['sso', 'scope', '--tenant', tenant, '--admins', '--all-accounts']);

  // --sso-allow-insecure-idp: the provider is plain http on loopback (tests only).
  ({ proc: server } = await start(BIN, ['--data-dir', dataDir, 'serve', '--listen',
    `127.0.0.1:${cairnPort}`, '--sso-allow-insecure-idp'],
  { env: { ...process.env, CAIRN_LOG: 'warn' } }, /listening on http:\/\/127\.0\.0\.1:\d+/, 'cairn'));
  ({ proc: idp } = await start('node', ['provider.mjs'], {
    cwd: IDP_DIR,
    env: { ...process.env, PORT: String(idpPort), INTERACTIVE: '1', KID: 'k1',
      REDIRECT_URI: `${base}/sso/${tenant}/oidc/callback` },
  }, /listening /, 'the OpenID provider'));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await stop(server);
  await stop(idp);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("an administrator signs in on the provider's page and lands on the dashboard", async () => {
  const page = await signInThroughIdp(ADA);
  await page.waitForURL(`${base}/accounts`);
  await page.getByRole('heading', { name: 'Backup Accounts' }).waitFor();
  const session = (await page.context().cookies(base)).find((c) => c.name === 'cairn_session');
  assert.ok(session, 'a dashboard session cookie');
  assert.equal(session.httpOnly, true);

  await page.goto(`${base}/settings/sso`);
  await page.getByRole('heading', { name: 'Single Sign-On' }).first().waitFor();
  await shot(page, 'sso-settings');
  await a11y.check(page, 'SSO settings, OpenID Connect configured (administrator)');

  // Password sign-in off, from the page (single sign-on covers administrators here).
  const form = page.locator('form.password-sign-in');
  await form.getByLabel('Single sign-on only').check();
  await form.getByRole('button', { name: 'Save password sign-in' }).click();
  await page.waitForURL(`${base}/settings/sso?saved=1`);
  assert.equal(await page.locator('form.password-sign-in').getByLabel('Single sign-on only').isChecked(), true);
  await a11y.check(page, 'SSO settings, saved (administrator)');
  mkdirSync(SHOTS, { recursive: true });
  await page.locator('form.password-sign-in').screenshot({ path: path.join(SHOTS, 'sso-password-sign-in.png') });
  const audit = JSON.parse(cli(['audit', '--tenant', tenant, '--json']));
  assert.equal(audit[0].action, 'password_sign_in_changed', JSON.stringify(audit[0]));
  assert.equal(audit[0].changes.password_sign_in.after, false, JSON.stringify(audit[0]));
});

test('a wrong password on the provider\'s page gets nobody in', async () => {
  const ctx = await browser.newContext();
  contexts.push(ctx);
  ctx.setDefaultTimeout(STEP);
  const page = await ctx.newPage();
  await page.goto(`${base}/sso/${tenant}/login`);
  await page.waitForURL((u) => u.href.startsWith(`${issuer}/interaction/`));
  await page.getByLabel('Username').fill(ADA.user);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Wrong user name or password.').waitFor();
  assert.deepEqual((await ctx.cookies(base)).map((c) => c.name), []);
});

test('a backup account signs in and sees only its own page; suspended over SCIM, it is signed out', async () => {
  const bob = await account(BOB.user);
  const page = await signInThroughIdp(BOB);
  await page.waitForURL(`${base}/me`);
  await page.getByText(BOB.user).first().waitFor();
  const names = (await page.context().cookies(base)).map((c) => c.name);
  assert.ok(names.includes('cairn_account'), `${names}`);
  assert.ok(!names.includes('cairn_session'), 'no dashboard session for a backup account');
  await shot(page, 'sso-me');
  await a11y.check(page, '/me (backup account)');
  // A device key made on the page: shown once, then listed.
  await page.getByLabel('Name').fill('laptop');
  await page.getByRole('button', { name: 'Add key' }).click();
  await page.getByRole('region', { name: 'New backup key' }).waitFor();
  await a11y.check(page, '/me, new backup key shown (backup account)');
  await page.goto(`${base}/me`);
  await page.locator('tr.key', { hasText: 'laptop' }).waitFor();
  await a11y.check(page, '/me, one backup key (backup account)');
  // Not the dashboard: a backup account's session opens no administrator page.
  const denied = await page.goto(`${base}/accounts`);
  assert.equal(denied.status(), 403);
  await page.getByText('Not allowed').first().waitFor();
  await a11y.check(page, '403 on an administrator page (backup account)');

  // The identity provider suspends the account (Okta's deactivation).
  const r = await scim('PATCH', `/Users/${bob}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'replace', value: { active: false } }],
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const res = await page.goto(`${base}/me`);
  assert.equal(res.status(), 401);
  await page.getByRole('heading', { name: 'Not signed in' }).waitFor();
  await a11y.check(page, 'error page: not signed in (401)');
  assert.equal(await page.getByText(BOB.user).count(), 0);
});

test('a suspended account cannot sign in again through the provider', async () => {
  const dave = await account(DAVE.user);
  const r = await scim('PATCH', `/Users/${dave}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'replace', value: { active: false } }],
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const page = await signInThroughIdp(DAVE);
  await page.getByRole('heading', { name: 'Sign-in refused' }).waitFor();
  await a11y.check(page, 'error page: sign-in refused');
  const names = (await page.context().cookies(base)).map((c) => c.name);
  assert.ok(!names.includes('cairn_account') && !names.includes('cairn_session'), `${names}`);
});

test('a group-mapped administrator loses the role when SCIM removes them from the group', async () => {
  const carol = await account(CAROL.user);
  const g = await scim('POST', '/Groups', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
    displayName: 'Cairn Admins',
    members: [{ value: carol }],
  });
  assert.equal(g.status, 201, JSON.stringify(g.json));
  cli(['sso', 'role', '--tenant', tenant, '--group', 'Cairn Admins', '--role', 'administrator']);

  const page = await signInThroughIdp(CAROL);
  await page.waitForURL(`${base}/accounts`);
  await page.getByRole('heading', { name: 'Backup Accounts' }).waitFor();
  let settings = await page.goto(`${base}/settings/sso`);
  assert.equal(settings.status(), 200);
  await page.getByRole('button', { name: 'Save' }).first().waitFor();
  await a11y.check(page, 'SSO settings (administrator by group)');

  // The identity provider takes Carol out of the group.
  const r = await scim('PATCH', `/Groups/${g.json.id}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'remove', path: `members[value eq "${carol}"]` }],
  });
  assert.ok(r.status === 200 || r.status === 204, JSON.stringify(r.json));

  // The next page load: no administrator page any more.
  await page.goto(`${base}/accounts`);
  await page.waitForURL(/\/login/);
  assert.equal(await page.getByRole('heading', { name: 'Backup Accounts' }).count(), 0);
  await a11y.check(page, 'sign-in, after the session ended');
  settings = await page.request.get(`${base}/settings/sso`, { maxRedirects: 0 });
  assert.ok([303, 403].includes(settings.status()), `settings answered ${settings.status()}`);
  assert.ok(!(await settings.text()).includes('Save'), 'no settings form');
  // The session was ended server-side (the browser's cookie now names nothing).
  const audit = JSON.parse(cli(['audit', '--tenant', tenant, '--json']));
  assert.equal(audit[0].action, 'sso_session_ended', JSON.stringify(audit[0]));
});

test('accessibility: no serious or critical violations on any page checked', (t) => {
  t.diagnostic(a11y.summary());
  a11y.assertClean();
});
