// End-to-end tests of the dashboard in headless Chromium (Debian's package, driven by
// playwright-core; no browser is downloaded). One real `cairn serve` on a loopback port
// with a fresh data directory; tenant and dashboard users come from the CLI, as an
// operator would create them. The steps run in order and share the browser: they are
// the administrator's setup flow of the Okta guide, then what provisioning does to a
// backup account, then the security properties.
//
// Environment: CAIRN_BIN (default ../target/debug/cairn), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOTS (default ../docs/screenshots).

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { A11y } from './axe.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, process.env.CAIRN_BIN ?? '../target/debug/cairn');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.resolve(here, process.env.SCREENSHOTS ?? '../docs/screenshots');
const ADMIN = { email: 'admin@acme.test', password: 'correct horse battery staple' };
const VIEWER = { email: 'viewer@acme.test', password: 'viewer horse battery staple' };
const XSS = '<img src=x onerror=alert(1)>';
const OKTA_UA = 'Okta SCIM Client 1.0.0';

let dataDir, server, base, tenant, browser, admin, page;
const shared = {}; // values handed from one step to the next
// Every page state below is checked with axe-core as the steps reach it; the last step
// fails listing every serious or critical violation seen (issue 22).
const a11y = new A11y();

function cli(args, input) {
  return execFileSync(BIN, ['--data-dir', dataDir, ...args], {
    input,
    encoding: 'utf8',
    timeout: 30_000,
  });
}

function startServer() {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['--data-dir', dataDir, 'serve', '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CAIRN_LOG: 'warn' },
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 20_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1] });
      }
    });
    proc.stderr.on('data', (d) => { err += d; });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${err}`)); });
  });
}

async function shot(p, name) {
  mkdirSync(SHOTS, { recursive: true });
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function signIn(p, who) {
  await p.goto(`${base}/login`);
  await p.getByLabel('Email').fill(who.email);
  await p.getByLabel('Password').fill(who.password);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.waitForURL(`${base}/accounts`);
}

/// A SCIM request as Okta sends it.
async function scim(method, urlPath, body) {
  const res = await fetch(`${tenant.tenant_url}${urlPath}`, {
    method,
    headers: {
      Authorization: `Bearer ${shared.token}`,
      'Content-Type': 'application/scim+json',
      'User-Agent': OKTA_UA,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function accountRow(p, userName) {
  await p.goto(`${base}/accounts?q=${encodeURIComponent(userName)}`);
  const row = p.locator('table.accounts tbody tr', { hasText: userName });
  await row.waitFor();
  return row;
}

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} missing: run scripts/e2e (it builds the binary)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-e2e-'));
  tenant = JSON.parse(cli(['tenant', 'create', '--name', 'Acme', '--json']));
  for (const [who, role] of [[ADMIN, 'administrator'], [VIEWER, 'viewer']]) {
    cli(['user', 'create', '--tenant', tenant.id, '--email', who.email, '--role', role,
      '--password-stdin'], `${who.password}\n`);
  }
  const s = await startServer();
  server = s.proc;
  base = s.url;
  // The Tenant URL follows the public URL, which defaults to the listen address.
  tenant.tenant_url = `${base}/scim/v2/${tenant.id}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  admin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(admin, 'administrator');
  page = await admin.newPage();
});

// An XSS payload that executed would open a dialog; no step expects one unless it says so
// (shared.expectDialog). Every browser context is watched, and every step ends checking.
shared.unexpectedDialogs = [];
function watchDialogs(ctx, who) {
  ctx.on('dialog', (d) => {
    if (!shared.expectDialog) {
      shared.unexpectedDialogs.push(`${who}: ${d.type()} "${d.message()}" on ${d.page()?.url()}`);
      return d.dismiss();
    }
  });
}

afterEach(() => {
  const seen = shared.unexpectedDialogs.splice(0);
  assert.deepEqual(seen, [], 'a dialog opened that no step expected (a script ran)');
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('administrator signs in', async () => {
  await page.goto(`${base}/accounts`);
  await page.waitForURL(/\/login\?next=/);
  await shot(page, 'login');
  await a11y.check(page, 'sign-in');
  // A wrong password first: a helpful message, no session.
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('The email or password is incorrect.').waitFor();
  await a11y.check(page, 'sign-in, wrong password');
  await signIn(page, ADMIN);
  await page.getByRole('heading', { name: 'Backup Accounts' }).waitFor();
  await a11y.check(page, 'accounts, none yet (administrator)');
  const cookies = await admin.cookies();
  const session = cookies.find((c) => c.name === 'cairn_session');
  assert.ok(session, 'session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
});

test('Settings → SCIM User Management: enable, Account Size 50, generate a token, save', async () => {
  await page.getByText('Settings', { exact: true }).click();
  await page.getByRole('link', { name: 'SCIM User Management' }).waitFor();
  await a11y.check(page, 'Settings menu open (administrator)');
  await page.getByRole('link', { name: 'SCIM User Management' }).click();
  await page.waitForURL(`${base}/settings/scim`);
  await a11y.check(page, 'SCIM settings (administrator)');
  assert.equal(await page.getByLabel('Tenant URL').inputValue(), tenant.tenant_url);
  assert.equal(await page.getByLabel('Tenant URL').getAttribute('readonly'), '');

  // A bad Account Size is refused inline, and nothing is saved.
  await page.getByLabel('Account Size').fill('fifty');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.locator('#size-error').waitFor();
  assert.match(await page.locator('#size-error').innerText(), /whole number/);
  assert.equal(await page.getByLabel('Account Size').getAttribute('aria-invalid'), 'true');
  await a11y.check(page, 'SCIM settings, invalid Account Size');

  await page.getByLabel('Enable SCIM user management').check();
  await page.getByLabel('Account Size').fill('50');
  await page.getByRole('button', { name: 'Generate' }).click();
  const tokenField = page.getByLabel('New API token');
  await tokenField.waitFor();
  shared.token = await tokenField.inputValue();
  assert.match(shared.token, /^cairn_[0-9a-f]{64}$/);
  await page.getByText('It will not be shown again').waitFor();
  await a11y.check(page, 'SCIM settings, new token shown');
  // The values typed before Generate are still there, waiting for Save.
  assert.equal(await page.getByLabel('Enable SCIM user management').isChecked(), true);
  assert.equal(await page.getByLabel('Account Size').inputValue(), '50');
  await shot(page, 'scim-settings-token');

  // The copy button copies the token.
  await admin.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await page.locator('[data-copy="new_token"]').click();
  await page.locator('[data-copy="new_token"]', { hasText: 'Copied' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), shared.token);

  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.waitForURL(`${base}/settings/scim?saved=1`);
  await page.getByText('Settings saved.').waitFor();
  await a11y.check(page, 'SCIM settings, saved');
  assert.equal(await page.getByLabel('Enable SCIM user management').isChecked(), true);
  assert.equal(await page.getByLabel('Account Size').inputValue(), '50');
  await shot(page, 'scim-settings');
});

test('reloading the settings page never shows the token again; the database holds only its hash', async () => {
  await page.reload();
  assert.ok(!(await page.content()).includes(shared.token));
  await page.goto(`${base}/settings/scim`);
  const html = await page.content();
  assert.ok(!html.includes(shared.token), 'token not in the page');
  const hint = await page.locator('.token-info code').innerText();
  assert.equal(hint, `${shared.token.slice(0, 10)}…${shared.token.slice(-4)}`);
  assert.equal(await page.locator('#new_token').count(), 0);

  // In the database files (main file and WAL): the SHA-256 of the token, never the token.
  const digest = createHash('sha256').update(shared.token).digest();
  const files = ['cairn.db', 'cairn.db-wal']
    .map((f) => path.join(dataDir, f))
    .filter(existsSync)
    .map((f) => readFileSync(f));
  const all = Buffer.concat(files);
  assert.equal(all.indexOf(Buffer.from(shared.token)), -1, 'token stored in clear');
  assert.equal(all.indexOf(Buffer.from(shared.token.slice(6))), -1, 'token body stored');
  assert.notEqual(all.indexOf(digest), -1, 'hash stored');
});

test('generating again asks for confirmation first', async () => {
  const hint = await page.locator('.token-info code').innerText();
  shared.expectDialog = true;
  const dialog = new Promise((resolve) => page.once('dialog', (d) => {
    resolve(d.message());
    d.dismiss();
  }));
  await page.getByRole('button', { name: 'Generate' }).click();
  assert.match(await dialog, /current token stops working/);
  shared.expectDialog = false;
  await page.goto(`${base}/settings/scim`);
  assert.equal(await page.locator('.token-info code').innerText(), hint, 'token unchanged');
});

test('the token provisions a user over SCIM; Backup Accounts shows it with 50 GB', async () => {
  const created = await scim('POST', '/Users', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
    userName: 'alice@acme.test',
    name: { givenName: 'Alice', familyName: 'Example' },
    displayName: 'Alice Example',
    emails: [{ value: 'alice@acme.test', type: 'work', primary: true }],
    active: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  shared.aliceId = created.json.id;
  const xss = await scim('POST', '/Users', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
    userName: 'mallory@acme.test',
    displayName: XSS,
    emails: [{ value: 'mallory@acme.test', primary: true }],
    active: true,
  });
  assert.equal(xss.status, 201);

  await page.getByRole('link', { name: 'Backup Accounts' }).click();
  const row = page.locator('table.accounts tbody tr', { hasText: 'alice@acme.test' });
  await row.waitFor();
  const text = await row.innerText();
  assert.match(text, /Alice Example/);
  assert.match(text, /50 GB/);
  assert.match(text, /Active/);
  assert.match(text, /SCIM/);
  await shot(page, 'accounts');
  await a11y.check(page, 'accounts (administrator)');

  const search = await accountRow(page, 'alice@');
  assert.match(await search.innerText(), /50 GB/);
  assert.equal(await page.locator('table.accounts tbody tr').count(), 1);
});

test('deactivated over SCIM, the account shows as suspended', async () => {
  const r = await scim('PATCH', `/Users/${shared.aliceId}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'replace', value: { active: false } }],
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const row = await accountRow(page, 'alice@acme.test');
  assert.match(await row.innerText(), /Suspended/);
  assert.match(await row.innerText(), /50 GB/, 'quota kept');
});

test('soft-deleted over SCIM, the account is restored from its page', async () => {
  const r = await scim('DELETE', `/Users/${shared.aliceId}`);
  assert.equal(r.status, 204);
  assert.equal((await scim('GET', `/Users/${shared.aliceId}`)).status, 404);

  const row = await accountRow(page, 'alice@acme.test');
  assert.match(await row.innerText(), /Deleted/);
  assert.match(await row.innerText(), /data purged on \d{4}-\d{2}-\d{2}/);
  await row.getByRole('link', { name: 'alice@acme.test' }).click();
  await page.waitForURL(`${base}/accounts/${shared.aliceId}`);
  await page.getByRole('heading', { name: 'Provisioning history' }).waitFor();
  const history = await page.locator('.timeline').innerText();
  for (const a of ['Account created', 'Account suspended', 'Account deleted']) {
    assert.match(history, new RegExp(a));
  }
  await page.getByRole('button', { name: 'Restore' }).click();
  await page.getByText('Account restored.').waitFor();
  assert.equal((await page.locator('.page-head .status').innerText()).trim(), 'Suspended',
    'restored as it was when deleted (suspended)');
  assert.equal(await page.getByRole('button', { name: 'Restore' }).count(), 0);
  await shot(page, 'account');
  await a11y.check(page, 'account, restored (administrator)');
  assert.equal((await scim('GET', `/Users/${shared.aliceId}`)).status, 200, 'back over SCIM');
});

test('Provisioning activity: filters and a chart of events per day', async () => {
  await page.getByRole('link', { name: 'Activity' }).click();
  await page.waitForURL(`${base}/activity`);
  assert.equal(await page.locator('svg.chart rect.bar').count() > 0, true);
  await shot(page, 'activity');
  await a11y.check(page, 'activity (administrator)');
  await page.getByLabel('Action').selectOption('user_restored');
  await page.getByLabel('Account').fill('ALICE@acme.test');
  await page.getByRole('button', { name: 'Filter' }).click();
  const rows = page.locator('table.activity tbody tr');
  assert.equal(await rows.count(), 1);
  assert.match(await rows.first().innerText(), /Account restored/);
  await page.getByLabel('Action').selectOption('');
  await page.getByLabel('Client').selectOption({ label: `Okta — ${OKTA_UA}` });
  await page.getByRole('button', { name: 'Filter' }).click();
  assert.equal(await rows.count(), 3, "Alice's create, suspend and delete, all by Okta");
  await page.getByLabel('Account').fill('');
  await page.getByRole('button', { name: 'Filter' }).click();
  assert.equal(await rows.count(), 4, 'and Mallory\'s create');
  await a11y.check(page, 'activity, filtered');

  await page.goto(`${base}/settings/scim`);
  assert.match(await page.locator('.last-used').innerText(), /^Okta last connected (just now|1 minute ago)$/);
});

test('an identity provider\'s XSS payload is rendered as text', async () => {
  const row = await accountRow(page, 'mallory@acme.test');
  assert.equal(await row.locator('td[data-label="Display name"]').innerText(), XSS);
  assert.equal(await page.locator('table.accounts img').count(), 0);
  await row.getByRole('link', { name: 'mallory@acme.test' }).click();
  await page.locator('.details').waitFor();
  assert.match(await page.locator('.details').innerText(), /<img src=x onerror=alert\(1\)>/);
  await a11y.check(page, 'account with an XSS display name (administrator)');
  assert.equal(await page.locator('main img').count(), 0);
  await page.goto(`${base}/activity`);
  assert.equal(await page.locator('main img').count(), 0);
  assert.deepEqual(shared.unexpectedDialogs, [], 'no script ran');
});

test('SCIM requests: what the identity provider sent, from an account\'s page and filtered', async () => {
  // A conflicting create, so there is a failure to find.
  const dup = await scim('POST', '/Users', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
    userName: 'ALICE@acme.test',
  });
  assert.equal(dup.status, 409);
  // Entries are written in the background: reload until they are there.
  const rows = page.locator('table.requests tbody tr');
  const until = async (url, enough) => {
    for (let i = 0; i < 50; i++) {
      await page.goto(url);
      if (await enough()) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.fail(`the request log never showed what ${url} should`);
  };
  const row = await accountRow(page, 'alice@acme.test');
  await row.getByRole('link', { name: 'alice@acme.test' }).click();
  await page.getByRole('link', { name: 'SCIM requests that touched this account' }).click();
  await page.waitForURL(`${base}/requests?account=${shared.aliceId}`);
  await until(page.url(), async () => (await rows.count()) >= 3);
  const text = await page.locator('table.requests').innerText();
  assert.match(text, /PATCH/);
  assert.match(text, /DELETE/);
  assert.match(text, /Okta/);

  await until(`${base}/requests`, async () => (await rows.count()) >= 4);
  await page.getByLabel('Status').selectOption('4xx');
  await page.getByRole('button', { name: 'Filter' }).click();
  await rows.first().waitFor();
  // The conflicting create, and the read of Alice after her deletion (404).
  assert.equal(await rows.count(), 2);
  assert.match(await rows.nth(0).innerText(), /409[\s\S]*uniqueness/);
  assert.match(await rows.nth(1).innerText(), /404/);
  await a11y.check(page, 'SCIM requests, filtered');
  await page.goto(`${base}/requests`);
  await shot(page, 'requests');
  await a11y.check(page, 'SCIM requests');

  await page.goto(`${base}/settings/scim`);
  assert.match(await page.locator('.last-success').innerText(), /^Okta, /);
  assert.match(await page.locator('.error-rate').innerText(), /2 of \d+ requests failed in the last 24 hours[\s\S]*Most common error/);
});

test('a POST without the CSRF token is refused', async () => {
  await page.goto(`${base}/settings/scim`);
  // A same-origin form with the session cookie but without the token (built through the
  // DevTools protocol: the page's CSP would block any injected script).
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.evaluate(() => {
      const f = document.createElement('form');
      f.method = 'post';
      f.action = '/settings/scim';
      for (const [k, v] of [['account_size_gb', '1'], ['action', 'save'], ['scim_enabled', 'on']]) {
        const i = document.createElement('input');
        i.type = 'hidden';
        i.name = k;
        i.value = v;
        f.appendChild(i);
      }
      document.body.appendChild(f);
      f.submit();
    }),
  ]);
  assert.equal(response.status(), 403);
  await page.getByRole('heading', { name: 'Form refused' }).waitFor();
  await a11y.check(page, 'error page: form refused (403)');
  await page.goto(`${base}/settings/scim`);
  assert.equal(await page.getByLabel('Account Size').inputValue(), '50', 'nothing changed');

  // Security headers on every page.
  const res = await page.goto(`${base}/accounts`);
  const csp = res.headers()['content-security-policy'];
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
});

test('a viewer sees accounts but gets 403 on the settings page', async () => {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  watchDialogs(ctx, 'viewer');
  try {
    const p = await ctx.newPage();
    await signIn(p, VIEWER);
    await p.locator('table.accounts').waitFor();
    await shot(p, 'accounts-phone');
    await a11y.check(p, 'accounts (viewer, phone)');
    assert.equal(await p.getByText('Settings', { exact: true }).count(), 0, 'menu hides Settings');
    assert.equal(await p.getByRole('link', { name: 'SCIM User Management' }).count(), 0);
    assert.equal(await p.getByRole('link', { name: 'SCIM requests' }).count(), 0);
    assert.equal((await p.goto(`${base}/requests`)).status(), 403);
    const res = await p.goto(`${base}/settings/scim`);
    assert.equal(res.status(), 403);
    await p.getByRole('heading', { name: 'Not allowed' }).waitFor();
    await a11y.check(p, 'error page: not allowed (viewer, phone)');
    // No Restore button for viewers either.
    await p.goto(`${base}/accounts?q=alice`);
    await p.getByRole('link', { name: 'alice@acme.test' }).click();
    await p.locator('.details').waitFor();
    assert.equal(await p.getByRole('button', { name: 'Restore' }).count(), 0);
    await a11y.check(p, 'account (viewer, phone)');
  } finally {
    await ctx.close();
  }
});

test('signing out ends the session', async () => {
  await page.goto(`${base}/accounts`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByText('You have been signed out.').waitFor();
  await a11y.check(page, 'sign-in, signed out');
  await page.goto(`${base}/accounts`);
  await page.waitForURL(/\/login\?next=/);
});

// --- Settings → Users and two-factor authentication (issue 22) ---------------------

/** RFC 6238 TOTP (HMAC-SHA-1, 30 s, 6 digits) of a base32 key at time step `step`. */
function totp(keyB32, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, acc = 0;
  const bytes = [];
  for (const c of keyB32.replace(/\s+/g, '')) {
    acc = (acc << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { bits -= 8; bytes.push((acc >> bits) & 0xff); }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigInt64BE(BigInt(step));
  const h = createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const o = h[19] & 0x0f;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

test('Settings → Users: invite, the link sets a password once; TOTP enrolment and sign-in', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(ctx, 'administrator (users)');
  const p = await ctx.newPage();
  await signIn(p, ADMIN);
  await p.goto(`${base}/settings/users`);
  await p.getByLabel('Email', { exact: true }).fill('ana@acme.test');
  await p.getByRole('button', { name: 'Invite' }).click();
  const link = await p.locator('#new_link').inputValue();
  assert.ok(link.startsWith(`${base}/invite/`), link);
  await shot(p, 'users');
  await a11y.check(p, 'Users, invite link shown (administrator)');

  const ana = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(ana, 'ana');
  const q = await ana.newPage();
  await q.goto(link);
  await a11y.check(q, 'invite: set password');
  await q.getByLabel(/New password/).fill('ana horse battery staple');
  await q.getByLabel('The same again').fill('not the same password');
  await q.getByRole('button', { name: 'Set password' }).click();
  await q.locator('#password-error').waitFor();
  await a11y.check(q, 'invite: set password, passwords differ');
  await q.getByLabel(/New password/).fill('ana horse battery staple');
  await q.getByLabel('The same again').fill('ana horse battery staple');
  await q.getByRole('button', { name: 'Set password' }).click();
  await q.waitForURL(`${base}/login?password_set=1`);
  const again = await q.goto(link);
  assert.equal(again.status(), 410, 'the link works once');
  await a11y.check(q, 'error page: link no longer valid (410)');

  await signIn(q, { email: 'ana@acme.test', password: 'ana horse battery staple' });
  await q.goto(`${base}/settings/security`);
  const key = await q.locator('#totp-secret').textContent();
  const step = Math.floor(Date.now() / 1000 / 30);
  await q.getByLabel('Code from the app').fill(totp(key, step));
  await shot(q, 'security-2fa');
  await a11y.check(q, 'Security, 2FA enrolment (viewer)');
  await q.getByRole('button', { name: 'Turn on' }).click();
  const codes = await q.locator('#recovery-codes code').allTextContents();
  assert.equal(codes.length, 10);
  await a11y.check(q, 'recovery codes (viewer)');
  await q.goto(`${base}/settings/security`);
  await a11y.check(q, 'Security, 2FA on (viewer)');

  // Signed out, the password alone is not enough; the next step's code signs in (the
  // enrolment's own code would be a replay).
  await q.getByRole('button', { name: 'Sign out' }).click();
  await q.goto(`${base}/login`);
  await q.getByLabel('Email').fill('ana@acme.test');
  await q.getByLabel('Password').fill('ana horse battery staple');
  await q.getByRole('button', { name: 'Sign in' }).click();
  await q.waitForURL(/\/login\/second-factor/);
  await a11y.check(q, 'second factor');
  await q.getByLabel('Code').fill(totp(key, step));
  await q.getByRole('button', { name: 'Sign in' }).click();
  await q.locator('#code-error').waitFor();
  await a11y.check(q, 'second factor, code refused');
  await q.getByLabel('Code').fill(totp(key, step + 1));
  await q.getByRole('button', { name: 'Sign in' }).click();
  await q.waitForURL(`${base}/accounts`);

  // The viewer gets 403 on the Users page.
  const viewer = await browser.newContext();
  const v = await viewer.newPage();
  await signIn(v, VIEWER);
  const res = await v.goto(`${base}/settings/users`);
  assert.equal(res.status(), 403);
  await Promise.all([ctx.close(), ana.close(), viewer.close()]);
});

// --- Accessibility (issue 22): every page, for each role ----------------------------

test('accessibility: every dashboard page, as administrator and as viewer', async () => {
  // A group with a member, so the group pages have something to show.
  const g = await scim('POST', '/Groups', {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
    displayName: 'Engineering',
    members: [{ value: shared.aliceId }],
  });
  assert.equal(g.status, 201, JSON.stringify(g.json));
  const missing = '/accounts/00000000-0000-0000-0000-000000000000';

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(ctx, 'administrator (accessibility)');
  try {
    const p = await ctx.newPage();
    await signIn(p, ADMIN);
    const mallory = await accountRow(p, 'mallory@acme.test');
    const malloryHref = await mallory.getByRole('link', { name: 'mallory@acme.test' }).getAttribute('href');
    for (const [url, label] of [
      ['/accounts', 'accounts'],
      ['/accounts?q=nobody-by-that-name', 'accounts, no match'],
      ['/accounts?sort=last-backup&status=active&stale=30', 'accounts, stale backups'],
      [`/accounts/${shared.aliceId}`, 'account'],
      ['/groups', 'groups'],
      [`/groups/${g.json.id}`, 'group'],
      ['/activity', 'activity'],
      ['/activity?action=user_restored', 'activity, filtered'],
      ['/requests', 'SCIM requests'],
      ['/requests?status=5xx', 'SCIM requests, none match'],
      ['/settings/scim', 'SCIM settings'],
      ['/settings/sso', 'SSO settings'],
      ['/settings/backups', 'Backups settings'],
      ['/settings/users', 'Users'],
      ['/settings/security', 'Security (2FA off)'],
      [missing, 'error page: not found'],
    ]) {
      await p.goto(`${base}${url}`);
      await a11y.check(p, `${label} (administrator)`);
    }

    // An account page with a backup key just made (shown once), then a group's size
    // refused (an error on the groups page).
    await p.goto(`${base}${malloryHref}`);
    await p.getByLabel('Name').fill('work laptop');
    await p.getByRole('button', { name: 'Add key' }).click();
    await p.getByRole('region', { name: 'New backup key' }).waitFor();
    await a11y.check(p, 'account, new backup key shown (administrator)');
    await p.goto(`${base}/groups`);
    await p.getByLabel('Account Size of Engineering in GB').fill('lots');
    await p.getByRole('button', { name: 'Save' }).click();
    await p.locator('.alert').waitFor();
    await a11y.check(p, 'groups, size refused (administrator)');

    // A password reset link (a set-password page that is not an invitation) for Ana,
    // whom no later step signs in (a reset ends the current password).
    await p.goto(`${base}/settings/users`);
    await p.locator('tr', { hasText: 'ana@acme.test' }).getByRole('button', { name: 'Reset password' }).click();
    const reset = await p.locator('#new_link').inputValue();
    await a11y.check(p, 'Users, reset link shown (administrator)');
    const r = await browser.newContext();
    try {
      const rp = await r.newPage();
      await rp.goto(reset);
      await rp.getByRole('button', { name: 'Set password' }).waitFor();
      await a11y.check(rp, 'reset: set password');
    } finally {
      await r.close();
    }
  } finally {
    await ctx.close();
  }

  const viewer = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(viewer, 'viewer (accessibility)');
  try {
    const v = await viewer.newPage();
    await signIn(v, VIEWER);
    for (const [url, label] of [
      ['/accounts', 'accounts'],
      [`/accounts/${shared.aliceId}`, 'account'],
      ['/groups', 'groups'],
      [`/groups/${g.json.id}`, 'group'],
      ['/activity', 'activity'],
      ['/settings/security', 'Security (2FA off)'],
      ['/settings/users', 'error page: not allowed'],
      [missing, 'error page: not found'],
    ]) {
      await v.goto(`${base}${url}`);
      await a11y.check(v, `${label} (viewer)`);
    }
  } finally {
    await viewer.close();
  }
});

test('accessibility: enrolment when the organisation requires two-factor authentication', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(ctx, 'administrator (2FA policy)');
  const viewer = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  watchDialogs(viewer, 'viewer (2FA policy)');
  try {
    const p = await ctx.newPage();
    await signIn(p, ADMIN);
    await p.goto(`${base}/settings/users`);
    await p.getByLabel('Require two-factor authentication for every password sign-in').check();
    await p.locator('form', { hasText: 'Require two-factor' }).getByRole('button', { name: 'Save' }).click();
    await p.locator('.notice').waitFor();
    await a11y.check(p, 'Users, policy saved (administrator)');

    // The viewer has no second factor yet: the password leads to the enrolment page.
    const v = await viewer.newPage();
    await v.goto(`${base}/login`);
    await v.getByLabel('Email').fill(VIEWER.email);
    await v.getByLabel('Password').fill(VIEWER.password);
    await v.getByRole('button', { name: 'Sign in' }).click();
    await v.waitForURL(/\/login\/enrol/);
    await a11y.check(v, 'second factor: enrolment required');
    const key = await v.locator('#totp-secret').textContent();
    const step = Math.floor(Date.now() / 1000 / 30);
    // A code of an hour ago: outside any window, so refused.
    await v.getByLabel('Code').fill(totp(key, step - 120));
    await v.getByRole('button', { name: 'Turn on and sign in' }).click();
    await v.locator('#code-error').waitFor();
    await a11y.check(v, 'second factor: enrolment, code refused');
    assert.equal(await v.locator('#totp-secret').textContent(), key, 'the same key offered again');
    await v.getByLabel('Code').fill(totp(key, step));
    await v.getByRole('button', { name: 'Turn on and sign in' }).click();
    await v.locator('#recovery-codes').waitFor();
    await a11y.check(v, 'second factor: enrolment, recovery codes');
  } finally {
    await Promise.all([ctx.close(), viewer.close()]);
  }
});

test('accessibility: no serious or critical violations on any page checked', (t) => {
  t.diagnostic(a11y.summary());
  a11y.assertClean();
});
