// From an assignment in the identity provider to a first backup, with no administrator
// step (issue 22): a SCIM create as Okta sends it → the welcome mail arrives at a local
// SMTP sink (aiosmtpd from PyPI, writing a Maildir) → its link opens My Backup in
// headless Chromium → a backup key is generated → the real `restic` initialises the
// repository and backs up with the commands the page shows (taken from the page text,
// run by sh) → the account page shows the backup. The time the whole way took is
// printed. Then: the link cannot be used twice.
//
// Environment: CAIRN_BIN (default ../target/debug/cairn), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOTS (default ../docs/screenshots), CAIRN_PYTHON (a python
// with aiosmtpd; default python3), RESTIC (default restic).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { A11y } from './axe.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
// The pages of the way are checked with axe-core too (e2e/axe.mjs); the last test fails
// on any serious or critical violation.
const a11y = new A11y();
const BIN = path.resolve(here, process.env.CAIRN_BIN ?? '../target/debug/cairn');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.resolve(here, process.env.SCREENSHOTS ?? '../docs/screenshots');
const PYTHON = process.env.CAIRN_PYTHON ?? 'python3';
const RESTIC = process.env.RESTIC ?? 'restic';
const ADMIN = { email: 'admin@acme.test', password: 'correct horse battery staple' };
const OKTA_UA = 'Okta SCIM Client 1.0.0';

let dataDir, server, sink, maildir, base, tenant, token, browser;
const shared = {};

function cli(args, input) {
  return execFileSync(BIN, ['--data-dir', dataDir, ...args], {
    input,
    encoding: 'utf8',
    timeout: 30_000,
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.on('connect', () => { c.destroy(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

function startServer(env) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['--data-dir', dataDir, 'serve', '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CAIRN_LOG: 'warn', ...env },
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

/// The messages in the sink's Maildir, as text.
function mails() {
  const out = [];
  for (const d of ['new', 'cur']) {
    const dir = path.join(maildir, d);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) out.push(readFileSync(path.join(dir, f), 'utf8'));
  }
  return out;
}

async function waitForMail(n) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const m = mails();
    if (m.length >= n) return m;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no mail after 60 s`);
}

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} missing: run scripts/e2e (it builds the binary)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  dataDir = mkdtempSync(path.join(tmpdir(), 'cairn-e2e-welcome-'));
  maildir = path.join(dataDir, 'maildir');
  const port = await freePort();
  sink = spawn(PYTHON, ['-m', 'aiosmtpd', '-n', '-l', `127.0.0.1:${port}`,
    '-c', 'aiosmtpd.handlers.Mailbox', maildir], { stdio: 'ignore' });
  await waitForPort(port);

  tenant = JSON.parse(cli(['tenant', 'create', '--name', 'Acme', '--json']));
  cli(['user', 'create', '--tenant', tenant.id, '--email', ADMIN.email, '--role',
    'administrator', '--password-stdin'], `${ADMIN.password}\n`);
  const s = await startServer({
    CAIRN_SMTP_URL: `smtp://127.0.0.1:${port}`,
    CAIRN_SMTP_FROM: 'Acme Backups <backups@acme.test>',
    CAIRN_MAIL_POLL_MS: '200',
  });
  server = s.proc;
  base = s.url;
  // The operator's setup: SCIM on with a token, and "Welcome new accounts".
  cli(['--public-url', base, 'scim', 'enable', '--tenant', tenant.id, '--account-size-gb', '5']);
  token = JSON.parse(cli(['--public-url', base, 'scim', 'token', '--tenant', tenant.id, '--json'])).token;
  cli(['tenant', 'welcome', '--tenant', tenant.id, '--on']);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  if (sink && sink.exitCode === null) {
    sink.kill('SIGTERM');
    await new Promise((r) => sink.once('exit', r));
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test('SCIM create → welcome mail → My Backup → key → restic backup → account page', async () => {
  const started = Date.now();
  // Okta's "Create User" request.
  const res = await fetch(`${base}/scim/v2/${tenant.id}/Users`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${token}`,
      'Content-Type': 'application/scim+json',
      'User-Agent': OKTA_UA,
    },
    body: JSON.stringify({
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: 'dana@acme.test',
      name: { givenName: 'Dana', familyName: 'Scully' },
      emails: [{ primary: true, value: 'dana@acme.test', type: 'work' }],
      displayName: 'Dana Scully',
      locale: 'en-US',
      externalId: '00u1dana',
      groups: [],
      password: 'ignored',
      active: true,
    }),
  });
  assert.equal(res.status, 201);
  shared.id = (await res.json()).id;

  const [mail] = await waitForMail(1);
  const mailAt = Date.now();
  assert.match(mail, /^To: dana@acme\.test/m);
  assert.match(mail, /^Subject: Acme: your backup account is ready/m);
  const body = mail.replace(/=\r?\n/g, '');
  const link = body.match(/http:\/\/127\.0\.0\.1:\d+\/me\/link\/[0-9a-f]{64}/)[0];
  shared.link = link;

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  await p.goto(link);
  await p.getByText('dana@acme.test').waitFor();
  await a11y.check(p, 'sign-in link, confirm (backup account)');
  await p.getByRole('button', { name: 'Continue to my backup' }).click();
  await p.waitForURL(`${base}/me`);
  await p.getByRole('heading', { name: 'dana@acme.test' }).waitFor();
  await p.getByText('Never backed up').waitFor();
  await a11y.check(p, 'My Backup, never backed up (backup account)');
  mkdirSync(SHOTS, { recursive: true });
  await p.screenshot({ path: path.join(SHOTS, 'my-backup.png'), fullPage: true });

  await p.getByLabel('Name').fill('laptop');
  await p.getByRole('button', { name: 'Add key' }).click();
  await p.getByText('shown only once').waitFor();
  const commands = await p.locator('code.restic-sh').innerText();
  assert.doesNotMatch(commands, /KEY-USER/);
  await a11y.check(p, 'My Backup, key and commands shown (backup account)');
  assert.match(await p.locator('code.restic-powershell').innerText(), /^\$env:RESTIC_REPOSITORY = 'rest:/);

  // The page's commands, as a person pastes them into a terminal: a home with a
  // Documents folder, restic asking for nothing (the repository password in the
  // environment, as `restic init` would otherwise prompt for it).
  const home = path.join(dataDir, 'home');
  mkdirSync(path.join(home, 'Documents'), { recursive: true });
  writeFileSync(path.join(home, 'Documents', 'thesis.txt'), 'chapter one\n');
  const out = execFileSync('sh', ['-e', '-c', commands], {
    env: {
      PATH: process.env.PATH,
      HOME: home,
      RESTIC_PASSWORD: 'a repository password',
      RESTIC_CACHE_DIR: path.join(dataDir, 'restic-cache'),
      ...(RESTIC !== 'restic' ? { PATH: `${path.dirname(RESTIC)}:${process.env.PATH}` } : {}),
    },
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.match(out, /snapshot [0-9a-f]{8} saved/);
  assert.equal(readFileSync(path.join(home, 'restored', home, 'Documents', 'thesis.txt'), 'utf8'),
    'chapter one\n');

  // My Backup and the administrator's account page show the backup.
  await p.goto(`${base}/me`);
  await p.locator('.last-backup time').waitFor();
  const adm = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const a = await adm.newPage();
  await a.goto(`${base}/login`);
  await a.getByLabel('Email').fill(ADMIN.email);
  await a.getByLabel('Password').fill(ADMIN.password);
  await a.getByRole('button', { name: 'Sign in' }).click();
  await a.waitForURL(`${base}/accounts`);
  await a.goto(`${base}/accounts/${shared.id}`);
  await a.locator('.last-backup time').waitFor();
  assert.doesNotMatch(await a.locator('.last-backup').innerText(), /Never/);
  await a11y.check(a, 'account page after the first backup (administrator)');
  const done = Date.now();
  console.log(`# the whole way: ${((done - started) / 1000).toFixed(1)} s ` +
    `(SCIM create to mail ${((mailAt - started) / 1000).toFixed(1)} s; ` +
    `mail to backup shown ${((done - mailAt) / 1000).toFixed(1)} s)`);
  await adm.close();
  await ctx.close();
});

test('the link cannot be used twice', async () => {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  const res = await p.goto(shared.link);
  assert.equal(res.status(), 410);
  await p.getByText('This sign-in link was used already').waitFor();
  await a11y.check(p, 'sign-in link used already (410)');
  assert.equal((await ctx.cookies()).some((c) => c.name === 'cairn_account'), false);
  await ctx.close();
});

test('an expired link starts no session', async () => {
  // A fresh link for the same account, opened on a second server over the same
  // database whose clock runs 8 days ahead (links last 7 days by default).
  const made = JSON.parse(cli(['--public-url', base, 'account', 'sign-in-link', '--tenant', tenant.id,
    '--user', 'dana@acme.test', '--json']));
  const later = await startServer({ CAIRN_CLOCK_OFFSET_SECS: String(8 * 86_400) });
  try {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const res = await p.goto(made.link.replace(base, later.url));
    assert.equal(res.status(), 410);
    await p.getByText('This sign-in link has expired').first().waitFor();
    await a11y.check(p, 'sign-in link expired (410)');
    assert.equal((await ctx.cookies()).some((c) => c.name === 'cairn_account'), false);
    await ctx.close();
  } finally {
    later.proc.kill('SIGTERM');
    await new Promise((r) => later.proc.once('exit', r));
  }
});

test('accessibility: no serious or critical violations on any page checked', (t) => {
  t.diagnostic(a11y.summary());
  a11y.assertClean();
});
