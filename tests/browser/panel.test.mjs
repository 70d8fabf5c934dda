// The control panel walked in a real browser: Debian's chromium driven by playwright-core,
// against `wharf serve` on a loopback port (SQLite; and Postgres when PANEL_POSTGRES_URL names
// a server to make a fresh database on), with a local warehouse endpoint that fails, then
// recovers. It walks the daily flows of an operations team, saves a screenshot of every
// screen under target/panel-screenshots/ and checks each with axe-core (no serious or
// critical violations).
//
//   npm ci --prefix tests/browser && cargo build && npm test --prefix tests/browser

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import axe from 'axe-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const WHARF = process.env.WHARF_BIN || join(root, 'target/debug/wharf');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = join(root, 'target/panel-screenshots');
const TOKEN = 'wharf_browser_suite_owner_token_0123456789';
const PASSWORD = 'harbour lights at dawn';
const PASSTHROUGH = '01900000-0000-7000-8000-000000000001';
const ORDERS = [
  { id: 1001, name: '#1001', total: '19.90' },
  { id: 1002, name: '#1002', total: '5.00' },
  { id: 1003, name: '#1003', total: '42.00' },
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, f, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await f();
    if (out) return out;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** The orders API the stream reads, and the warehouse it delivers to (failing at first). */
async function peer() {
  const state = { failing: true, received: [] };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.url.startsWith('/orders')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ orders: ORDERS }));
        return;
      }
      state.received.push({ url: req.url, body, authorization: req.headers.authorization });
      if (state.failing && req.url.startsWith('/warehouse')) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"error":"the warehouse is down"}');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${server.address().port}`;
  state.close = () => new Promise((r) => server.close(r));
  return state;
}

/** `wharf serve` on a loopback port, on SQLite in a fresh folder or on `databaseUrl`. */
async function wharf(databaseUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'wharf-panel-'));
  const config = join(dir, 'wharf.toml');
  writeFileSync(config, [
    'listen = "127.0.0.1:0"',
    `data_dir = "${join(dir, 'data')}"`,
    databaseUrl ? `database_url = "${databaseUrl}"` : '',
    '[outbound]', 'allow = ["127.0.0.0/8"]',
    '[alerts]', 'interval_seconds = 1', 'condition_interval_seconds = 1',
    '[workers]', 'poll_interval_ms = 100',
    '[auth]', 'argon2_memory_kib = 1024', 'argon2_iterations = 1',
  ].join('\n'));
  // The server reads every WHARF_* variable as configuration: give it only its own.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WHARF_')));
  env.WHARF_BOOTSTRAP_TOKEN = TOKEN;
  const child = spawn(WHARF, ['serve', '--config', config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const address = await eventually('the server to listen', () => {
    if (child.exitCode !== null) throw new Error(`wharf exited: ${log}`);
    const m = log.match(/address=([0-9.:]+)/);
    return m && m[1];
  });
  const base = `http://${address}`;
  const api = async (method, path, body, token = TOKEN) => {
    const res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return data;
  };
  const cli = (args, input) => execFileSync(WHARF, [...args, '--config', config], { env: { ...env, WHARF_BOOTSTRAP_TOKEN: undefined }, input, encoding: 'utf8' });
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  };
  return { base, api, cli, stop, log: () => log };
}

function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of text.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The RFC 6238 code of `secret` at time step `step` (30 s steps). */
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32(secret)).update(counter).digest();
  const o = h[h.length - 1] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}
const stepNow = () => Math.floor(Date.now() / 30000);

/** Saves a screenshot of the page and checks it with axe-core. */
async function look(page, name, violations) {
  await page.waitForLoadState('networkidle');
  await page.waitForFunction(() => !document.body.innerText.includes('Loading…'));
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  await page.evaluate(axe.source);
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
  });
  for (const v of found) violations.push(`${name}: ${v}`);
}

async function signIn(page, base, email, password) {
  await page.goto(`${base}/`);
  await page.waitForURL(/\/sign-in\?next=/);
  await page.getByLabel('E-mail address').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function walk(store, databaseUrl) {
  const server = await wharf(databaseUrl);
  const warehouse = await peer();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const violations = [];
  const shot = (page, name) => look(page, `${store}-${name}`, violations);
  let current = null;
  try {
    const { api, base } = server;
    // What an owner set up before: a stream from the orders API to the warehouse, and an alert.
    const source = await api('POST', '/sources', { title: 'Orders API', system: 'http', function: 'http.fetch', trigger: 'manual', params: { url: `${warehouse.url}/orders`, records_path: 'orders', entity_id_path: 'name' } });
    const destination = await api('POST', '/destinations', { title: 'Warehouse', system: 'http', function: 'http.send', params: { url: `${warehouse.url}/warehouse` }, retry: { schedule_seconds: [0], timeout_seconds: 5 } });
    const stream = await api('POST', '/streams', { title: 'Orders to the warehouse', data_type: 'sales_order', source_id: source.id, transformation_id: PASSTHROUGH, destination_id: destination.id });
    const channel = await api('POST', '/alert-channels', { name: 'Operations hook', kind: 'webhook', target: `${warehouse.url}/alerts` });
    await api('POST', '/alert-rules', { name: 'Failed orders', kind: 'event_failed', stream_ids: [stream.id], channel_ids: [channel.id] });
    const { job_id: firstJob } = await api('POST', `/streams/${stream.id}/run`, {});
    await eventually('the first job to end', async () => ['FINISHED', 'FINISHED_WITH_ISSUES', 'FAILED'].includes((await api('GET', `/jobs/${firstJob}`)).status));
    const failed = await api('GET', `/events?stream_id=${stream.id}&status=FAILED`);
    assert.equal(failed.items.length, 3, 'the warehouse was down: three FAILED events');
    // The first owner, made on the command line.
    server.cli(['user', 'create', '--email', 'owner@example.com', '--role', 'owner', '--name', 'Olive Owner', '--password-stdin'], PASSWORD);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    current = page;
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) errors.push(m.text()); });

    // Signing in: a wrong password says so; the right one opens the overview.
    await page.goto(`${base}/`);
    await page.waitForURL(/\/sign-in\?next=/);
    await shot(page, 'sign-in');
    await page.getByLabel('E-mail address').fill('owner@example.com');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'wrong' }).waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/');

    // 2FA: enrol with the key the QR code holds, keep the recovery codes.
    await page.getByRole('link', { name: 'My account' }).click();
    await page.getByRole('button', { name: 'Turn on two-factor sign-in' }).click();
    const secret = (await page.locator('code.secret').textContent()).trim();
    assert.ok(await page.locator('.qr svg').count(), 'a QR code is shown');
    await shot(page, 'account-enrol');
    const enrolStep = stepNow();
    await page.getByLabel('Code from the app').fill(totp(secret, enrolStep));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByText('Keep these recovery codes').waitFor();
    const codes = await page.locator('.codes code').allTextContents();
    assert.equal(codes.length, 10);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Wharf' }).waitFor();

    // Signing in again asks for the code; a recovery code works once.
    await page.getByLabel('E-mail address').fill('owner@example.com');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByLabel('Code from your authenticator app').waitFor();
    await page.getByRole('button', { name: 'Use a recovery code instead' }).click();
    await page.getByLabel('Recovery code').fill(codes[0]);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Wharf' }).waitFor();
    // And with the app's code of a later step than the one used to enrol.
    await eventually('the next TOTP step', async () => stepNow() > enrolStep, 35000);
    await page.getByLabel('E-mail address').fill('owner@example.com');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByLabel('Code from your authenticator app').fill(totp(secret, stepNow()));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await shot(page, 'overview');

    // From the overview to a FAILED event: the count links to the filtered list.
    await page.getByRole('link', { name: 'FAILED events: 3' }).first().click();
    await page.getByRole('heading', { name: 'Events' }).waitFor();
    const listed = new URL(page.url());
    assert.equal(listed.searchParams.get('status'), 'FAILED');
    assert.equal(listed.searchParams.get('stream_id'), stream.id);
    await eventually('three rows', async () => (await page.locator('tbody tr').count()) === 3);
    await shot(page, 'events');
    // The list as CSV: every row the filters select, with a header row.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csv = await (await download.createReadStream()).toArray();
    const lines = Buffer.concat(csv).toString('utf8').trim().split('\n');
    assert.equal(download.suggestedFilename(), 'events.csv');
    assert.ok(lines[0].startsWith('id,stream_id,job_id,status'), lines[0]);
    assert.equal(lines.length, 4, 'a header and three events');
    await page.locator('tbody tr').first().getByRole('link').first().click();
    await page.getByRole('heading', { name: /^Event / }).waitFor();
    await page.getByText('HTTP 500').first().waitFor();
    await page.getByText('the warehouse is down').first().waitFor({ state: 'attached' });
    await shot(page, 'event');
    const failedEventUrl = page.url();

    // The warehouse is back. Replicate with an edited payload: bad JSON is refused here first.
    warehouse.failing = false;
    await page.getByRole('button', { name: 'Replicate…' }).click();
    const editor = page.getByLabel('Payload (JSON)');
    const original = JSON.parse(await editor.inputValue());
    await editor.fill('{"name": "#100');
    await page.getByRole('button', { name: 'Replicate', exact: true }).click();
    await page.getByText('This is not valid JSON').waitFor();
    assert.equal(new URL(page.url()).pathname, new URL(failedEventUrl).pathname, 'nothing was sent');
    await editor.fill(JSON.stringify({ ...original, note: 'fixed by hand' }, null, 2));
    await page.getByRole('button', { name: 'Replicate', exact: true }).click();
    await page.waitForURL((u) => u.pathname.startsWith('/events/') && u.href !== failedEventUrl);
    await eventually('the replica to be delivered', async () => {
      await page.reload();
      await page.getByRole('heading', { name: /^Event / }).waitFor();
      return (await page.locator('.facts .status').first().textContent()) === 'OK';
    });
    assert.ok(warehouse.received.some((r) => r.body.includes('fixed by hand')), 'the edited payload reached the warehouse');
    await page.getByText('Replica of').waitFor();
    // The back button returns to the failed event, which can be ignored and counted again.
    await page.goBack();
    await eventually('the failed event again', async () => page.url() === failedEventUrl);
    await page.getByRole('button', { name: 'Ignore', exact: true }).click();
    await page.getByText('The event is ignored').waitFor();
    await page.getByRole('button', { name: 'Stop ignoring' }).click();
    await page.getByText('The event counts again.').waitFor();

    // Bulk: replicate what the filter selects, after seeing how many.
    await page.goto(`${base}/events?stream_id=${stream.id}&status=FAILED`);
    await page.getByRole('button', { name: 'Replicate all matching…' }).click();
    await page.getByText('3 events match these filters.').waitFor();
    await page.getByRole('button', { name: 'Replicate 3 events' }).click();
    await page.waitForURL(/\/jobs\//);
    await eventually('the bulk replica job to finish', async () => {
      await page.reload();
      await page.getByRole('heading', { name: /^Job / }).waitFor();
      return (await page.locator('.facts .status').first().textContent()) === 'FINISHED';
    });
    await shot(page, 'job');

    // The alert the failures raised: acknowledge it.
    await eventually('an open alert', async () => (await api('GET', '/alerts?status=open')).items.length > 0);
    await page.goto(`${base}/alerts?status=open`);
    await page.getByRole('button', { name: 'Acknowledge' }).first().click();
    await page.getByText('The alert is acknowledged.').waitFor();
    assert.equal((await api('GET', '/alerts?status=acknowledged')).items.length, 1);
    await shot(page, 'alerts');

    // A channel and a rule made in the panel.
    await page.goto(`${base}/alert-channels`);
    await page.getByRole('button', { name: 'New channel' }).click();
    await page.getByLabel('Name').fill('Night shift');
    await page.getByLabel('Kind').selectOption('webhook');
    await page.getByLabel('URL').fill(`${warehouse.url}/night`);
    await page.getByRole('button', { name: 'Create channel' }).click();
    await page.getByText('shown once').waitFor();
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('heading', { name: 'Night shift' }).waitFor();
    await page.goto(`${base}/alert-rules`);
    await page.getByRole('button', { name: 'New rule' }).click();
    await page.getByLabel('Name').fill('Too many errors');
    await page.getByLabel('Raise an alert when').selectOption('error_rate');
    await page.getByLabel('Threshold (% of finished events not OK)').fill('25');
    await page.getByLabel('Orders to the warehouse').check();
    await page.getByLabel('Night shift').check();
    await page.getByRole('button', { name: 'Create rule' }).click();
    await page.getByRole('heading', { name: 'Too many errors' }).waitFor();
    const rules = await api('GET', '/alert-rules');
    const made = rules.items.find((r) => r.name === 'Too many errors');
    assert.equal(made.kind, 'error_rate');
    assert.equal(made.threshold_pct, 25);
    assert.deepEqual(made.stream_ids, [stream.id]);
    await shot(page, 'alert-rule');

    // A stream from scratch: a key, a source, a transformation (with a dry run), a destination
    // and the stream; run it. Key, source and destination forms come from the system library.
    await page.goto(`${base}/keys`);
    await page.getByRole('button', { name: 'New key' }).click();
    await page.getByLabel('System').selectOption('http');
    await page.getByLabel('Title').fill('Warehouse API');
    await page.locator('#f-credentials-base_url').fill(warehouse.url);
    await page.locator('#f-credentials-bearer_token').fill('s3cret-token');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByRole('heading', { name: 'Warehouse API' }).waitFor();
    await page.getByText('********').first().waitFor();
    assert.equal(await page.getByText('s3cret-token').count(), 0, 'a secret is never shown');
    await shot(page, 'key');
    await page.goto(`${base}/sources`);
    await page.getByRole('button', { name: 'New source' }).click();
    await page.getByLabel('System').selectOption('http');
    await page.getByLabel('Function').selectOption('http.fetch');
    await page.getByLabel('Title').fill('Second orders API');
    await page.getByLabel('Key (optional)').selectOption({ label: 'Warehouse API' });
    await page.getByLabel('Trigger').selectOption('manual');
    await page.locator('#f-params-url').fill(`${warehouse.url}/orders`);
    await page.locator('#f-params-records_path').fill('orders');
    await page.locator('#f-params-entity_id_path').fill('name');
    await page.getByRole('button', { name: 'Create source' }).click();
    await page.getByRole('heading', { name: 'Second orders API' }).waitFor();
    await shot(page, 'source');
    await page.goto(`${base}/transformations`);
    await page.getByRole('button', { name: 'New transformation' }).click();
    await page.getByLabel('Title').fill('Order to warehouse line');
    await page.getByLabel('Description').fill('One line per order');
    await page.getByLabel('Language').selectOption('javascript');
    await page.getByLabel('Code').fill('function transform(order) {\n  return { reference: order.name, total: Number(order.total) };\n}\n');
    await page.getByRole('button', { name: 'Create transformation' }).click();
    await page.getByRole('heading', { name: 'Order to warehouse line' }).waitFor();
    await page.getByLabel('Sample record (JSON)').fill('{"name": "#2001", "total": "12.50"}');
    await page.getByRole('button', { name: 'Dry run' }).click();
    await page.getByText('1 output').waitFor();
    await page.getByText('"reference": "#2001"').waitFor();
    await shot(page, 'transformation');
    await page.goto(`${base}/destinations`);
    await page.getByRole('button', { name: 'New destination' }).click();
    await page.getByLabel('System').selectOption('http');
    await page.getByLabel('Function').selectOption('http.send');
    await page.getByLabel('Title').fill('Second warehouse');
    await page.getByLabel('Key (optional)').selectOption({ label: 'Warehouse API' });
    await page.locator('#f-params-url').fill(`${warehouse.url}/second`);
    // A retry schedule that is not JSON is refused before anything is sent.
    await page.getByLabel('Retry schedule (JSON, optional)').fill('{"schedule_seconds": [0');
    await page.getByRole('button', { name: 'Create destination' }).click();
    await page.getByText('This is not valid JSON').waitFor();
    await page.getByLabel('Retry schedule (JSON, optional)').fill('{"schedule_seconds": [0, 5], "timeout_seconds": 10}');
    await page.getByRole('button', { name: 'Create destination' }).click();
    await page.getByRole('heading', { name: 'Second warehouse' }).waitFor();
    await page.goto(`${base}/streams`);
    await page.getByRole('link', { name: 'New stream' }).click();
    await page.getByLabel('Title').fill('Second stream');
    await page.getByLabel('Source').selectOption({ label: 'Second orders API' });
    await page.getByLabel('Transformation').selectOption({ label: 'Order to warehouse line' });
    await page.getByLabel('Destination').selectOption({ label: 'Second warehouse' });
    await page.getByRole('button', { name: 'Create stream' }).click();
    await page.getByRole('heading', { name: 'Second stream' }).waitFor();
    await shot(page, 'stream');
    // Off and on, into test mode and out, then run it.
    await page.getByRole('button', { name: 'Deactivate' }).click();
    await page.getByText('The stream is off.').waitFor();
    await page.locator('.facts .status', { hasText: 'inactive' }).waitFor();
    await page.getByRole('button', { name: 'Activate' }).click();
    await page.getByText('The stream is on.').waitFor();
    await page.getByRole('button', { name: 'Test mode' }).click();
    await page.getByText('Test mode is on').waitFor();
    await page.getByRole('button', { name: 'Leave test mode' }).click();
    await page.getByText('Test mode is off.').waitFor();
    const second = (await api('GET', '/streams')).items.find((x) => x.title === 'Second stream');
    assert.equal(second.active, true);
    assert.equal(second.test_mode, false);
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.waitForURL(/\/jobs\//);
    await eventually('the new stream to deliver', async () => warehouse.received.filter((r) => r.url.startsWith('/second')).length === 3);
    assert.ok(warehouse.received.some((r) => r.url.startsWith('/second') && r.body.includes('"reference":"#1001"')));
    assert.ok(warehouse.received.filter((r) => r.url.startsWith('/second')).every((r) => r.authorization === 'Bearer s3cret-token'), "the key's token went with each delivery");

    // A lookup table filled from a CSV file.
    await page.goto(`${base}/lookup-tables`);
    await page.getByRole('button', { name: 'New lookup table' }).click();
    await page.getByLabel('Body (JSON)').fill(JSON.stringify({ name: 'carriers', description: 'Country to carrier', entries: {} }));
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'carriers' }).waitFor();
    await page.getByLabel('CSV file (key,value with a header row)').setInputFiles({ name: 'carriers.csv', mimeType: 'text/csv', buffer: Buffer.from('key,value\nGB,royal-mail\nDE,dhl\n') });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByText('The CSV is uploaded.').waitFor();
    const tables = await api('GET', '/lookup-tables');
    const carriers = tables.items.find((t) => t.name === 'carriers');
    const entries = await api('GET', `/lookup-tables/${carriers.id}/entries`);
    assert.equal(JSON.stringify(entries.items || entries).includes('royal-mail'), true);

    // An API token for a script, expiring in 30 days: shown once.
    await page.goto(`${base}/tokens`);
    await page.getByLabel('Name').fill('Nightly export');
    await page.getByLabel('Role', { exact: true }).selectOption('viewer');
    await page.getByLabel('Expires').selectOption('30');
    await page.getByRole('button', { name: 'Create token' }).click();
    const shownToken = (await page.locator('code.secret').textContent()).trim();
    const me = await (await fetch(`${base}/api/v1/users/me`, { headers: { authorization: `Bearer ${shownToken}` } })).json();
    assert.equal(me.role, 'viewer');
    const listedTokens = await api('GET', '/tokens');
    assert.ok(listedTokens.items.find((t) => t.name === 'Nightly export').expires_at, 'the token expires');

    // The organisation's own retention policy, and back to the defaults.
    await page.goto(`${base}/retention`);
    await page.getByLabel('Payloads kept (days)').fill('14');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('The settings are saved.').waitFor();
    let org = (await api('GET', '/organisations')).items[0];
    assert.equal(org.retention.payload_days, 14);
    assert.equal(org.retention_is_default, false);
    await page.getByRole('button', { name: 'Back to the defaults' }).click();
    await page.getByText('The retention policy is back to the defaults.').waitFor();
    org = (await api('GET', '/organisations')).items[0];
    assert.equal(org.retention_is_default, true);

    // Every screen, for the record and for axe; and the overview on a phone.
    for (const [path, name] of [['/streams', 'streams'], ['/jobs', 'jobs'], ['/entities', 'entities'], ['/event-log', 'event-log'],
      ['/alert-rules', 'alert-rules'], ['/alert-channels', 'alert-channels'], ['/notifications', 'notifications'], ['/systems', 'systems'],
      ['/keys', 'keys'], ['/sources', 'sources'], ['/destinations', 'destinations'], ['/transformations', 'transformations'],
      ['/lookup-tables', 'lookup-tables'], ['/users', 'users'], ['/tokens', 'tokens'], ['/audit-log', 'audit-log'],
      ['/retention', 'retention'], ['/account', 'account']]) {
      await page.goto(`${base}${path}`);
      await page.locator('#screen-title').waitFor();
      await shot(page, name);
    }
    await page.goto(`${base}/entities`);
    await page.getByRole('link', { name: '#1001' }).first().click();
    await page.getByRole('heading', { name: 'History' }).waitFor();
    await shot(page, 'entity');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await shot(page, 'overview-phone');
    await page.setViewportSize({ width: 1280, height: 900 });

    // A viewer, invited by the owner, sees no write controls; a forged write is refused anyway.
    await page.goto(`${base}/users`);
    await page.getByLabel('E-mail address').fill('vic@example.com');
    await page.getByLabel('Name').fill('Vic Viewer');
    await page.getByLabel('Role', { exact: true }).selectOption('viewer');
    await page.getByRole('button', { name: 'Invite' }).click();
    const link = (await page.locator('code.secret').textContent()).trim();
    const viewerContext = await browser.newContext();
    const viewer = await viewerContext.newPage();
    await viewer.goto(link.replace(/^https?:\/\/[^/]+/, base));
    await viewer.getByLabel('New password').fill('viewer passphrase at sea');
    await viewer.getByLabel('The same password again').fill('viewer passphrase at sea');
    await viewer.getByRole('button', { name: 'Set password' }).click();
    await viewer.getByText('Your password is set.').waitFor();
    await signIn(viewer, base, 'vic@example.com', 'viewer passphrase at sea');
    await viewer.getByRole('heading', { name: 'Overview' }).waitFor();
    await viewer.goto(`${base}/streams`);
    await viewer.getByRole('link', { name: 'Orders to the warehouse' }).waitFor();
    assert.equal(await viewer.getByRole('button', { name: 'Run now' }).count(), 0);
    assert.equal(await viewer.getByRole('link', { name: 'New stream' }).count(), 0);
    await viewer.goto(failedEventUrl);
    await viewer.getByRole('heading', { name: /^Event / }).waitFor();
    assert.equal(await viewer.getByRole('button', { name: 'Replicate…' }).count(), 0);
    assert.equal(await viewer.getByRole('link', { name: 'Users' }).count(), 0, 'no users screen for a viewer');
    const forged = await viewer.evaluate(async (id) => {
      const csrf = decodeURIComponent((document.cookie.match(/wharf_csrf=([^;]*)/) || [])[1] || '');
      const res = await fetch(`/api/v1/streams/${id}/run`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: '{}' });
      return res.status;
    }, stream.id);
    assert.equal(forged, 403);
    await look(viewer, `${store}-viewer-event`, violations);
    await viewerContext.close();

    // An event viewer follows the event log, and sees nothing else.
    const ev = await api('POST', '/users', { email: 'eve@example.com', name: 'Eve Events', role: 'event_viewer' });
    const set = await fetch(`${base}/api/v1/password`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: ev.invitation.token, password: 'event viewer at the quay' }) });
    assert.equal(set.status, 204);
    const evContext = await browser.newContext();
    const evPage = await evContext.newPage();
    await signIn(evPage, base, 'eve@example.com', 'event viewer at the quay');
    await evPage.getByRole('heading', { name: 'Event log' }).waitFor();
    assert.equal(new URL(evPage.url()).pathname, '/event-log');
    const links = await evPage.getByRole('navigation', { name: 'Main' }).getByRole('link').allTextContents();
    assert.deepEqual(links, ['Event log', 'My account']);
    await evPage.goto(`${base}/events`);
    await evPage.getByRole('heading', { name: 'Not for your role' }).waitFor();
    await evContext.close();

    // The audit log shows what the people did.
    const audit = await api('GET', '/audit-log?actor_type=user&limit=200');
    const actions = new Set(audit.items.map((a) => a.action));
    for (const a of ['session.create', 'event.replicate', 'event.replicate_many', 'stream.create', 'alert.acknowledge', 'user.create']) {
      assert.ok(actions.has(a), `the audit log has ${a}: ${[...actions].join(', ')}`);
    }
    assert.deepEqual(errors, [], 'no script errors');
    assert.deepEqual(violations, [], 'no serious or critical accessibility violations');
    await context.close();
  } catch (e) {
    if (current) await current.screenshot({ path: join(SHOTS, `${store}-FAILED.png`), fullPage: true }).catch(() => {});
    console.error(server.log().slice(-4000));
    throw e;
  } finally {
    await browser.close();
    await warehouse.close();
    await server.stop();
  }
}

mkdirSync(SHOTS, { recursive: true });

test('the daily flows on SQLite', { timeout: 300000 }, async () => {
  await walk('sqlite');
});

test('the daily flows on Postgres', { timeout: 300000, skip: !process.env.PANEL_POSTGRES_URL && 'PANEL_POSTGRES_URL is not set' }, async () => {
  const admin = process.env.PANEL_POSTGRES_URL;
  const name = `wharf_panel_${process.pid}`;
  execFileSync('psql', [admin, '-qc', `DROP DATABASE IF EXISTS ${name}`]);
  execFileSync('psql', [admin, '-qc', `CREATE DATABASE ${name}`]);
  try {
    await walk('postgres', admin.replace(/\/[^/?]*(\?|$)/, `/${name}$1`));
  } finally {
    execFileSync('psql', [admin, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
  }
});
