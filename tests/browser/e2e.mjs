// The web view end to end, in Chromium, against a real daemon with the demo data.
// Run by tests/web.rs, which starts the daemons and passes:
//   SB_URL, SB_PERF_URL (a daemon with 1,000 ongoing conversations), SB_SUPERVISOR_TOKEN,
//   SB_INTEGRATION_TOKEN, SB_CHROMIUM, SB_SCREENSHOTS (a folder for the screenshots).
// Prints one line per scenario and the first-render figures; exits non-zero on failure.

import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { unlinkSync, writeFileSync } from 'node:fs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (tests/web.rs sets it)`);
  return v;
};
const URL = env('SB_URL');
const PERF_URL = env('SB_PERF_URL');
const SUPERVISOR = env('SB_SUPERVISOR_TOKEN');
const INTEGRATION = env('SB_INTEGRATION_TOKEN');
const SHOTS = env('SB_SCREENSHOTS');
const RULES_DIR = env('SB_RULES_DIR');
const TIMEOUT = 10_000;

const problems = [];
const step = (name) => console.log(`ok - ${name}`);
const fail = (message) => { throw new Error(message); };
const assert = (cond, message) => { if (!cond) fail(message); };

const browser = await chromium.launch({
  executablePath: env('SB_CHROMIUM'),
  headless: true,
  // Playwright gives each launch a fresh temporary profile (--user-data-dir).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

async function newPage(url, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused request logs an error in the console; the page handles those itself.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  const origin = new globalThis.URL(url).origin;
  page.on('request', (r) => {
    if (new globalThis.URL(r.url()).origin !== origin) problems.push(`a request outside the daemon: ${r.url()}`);
  });
  await page.goto(url);
  return page;
}

async function signIn(page, token) {
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#rows tr');
  await page.waitForSelector('#live[data-state="live"]');
}

/** Calls `probe` until it answers something truthy (at most TIMEOUT). */
async function until(probe, what) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const closed = (page, dialog) => page.waitForSelector(`#${dialog}[open]`, { state: 'detached' });
const row = (page, id) => page.locator(`#rows tr[data-id="${id}"]`);
async function cells(page, id) {
  return row(page, id).evaluate((tr) => ({
    queue: tr.cells[2].textContent, status: tr.cells[3].textContent, rep: tr.cells[4].textContent,
  }));
}
async function waitRow(page, id, want, what) {
  try {
    await page.waitForFunction(([id, want]) => {
      const tr = document.querySelector(`#rows tr[data-id="${id}"]`);
      return tr && Object.entries(want).every(([k, v]) => tr.cells[{ queue: 2, status: 3, rep: 4 }[k]].textContent === v);
    }, [id, want], { timeout: TIMEOUT });
  } catch {
    fail(`${what}: row ${id} is ${JSON.stringify(await cells(page, id).catch(() => 'absent'))}, expected ${JSON.stringify(want)}`);
  }
}
async function ids(page) {
  return page.$$eval('#rows tr', (trs) => trs.map((tr) => tr.dataset.id));
}
async function api(method, path, token, body, headers = {}) {
  const res = await fetch(`${URL}${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

let exitCode = 0;
try {
  // ---- sign in
  const a = await newPage(URL);
  const streams = [];
  a.on('request', (r) => { if (r.url().includes('/v1/changes/stream')) streams.push(r.headers()); });
  await a.waitForSelector('#signin:not([hidden])');
  await a.fill('#token', 'not-a-token');
  await a.press('#token', 'Enter');
  await a.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('not known'));
  await signIn(a, SUPERVISOR);
  assert(await a.textContent('#me-name') === 'demo-supervisor', 'the header names the token');
  assert(await a.textContent('#me-role') === 'supervisor', 'the header names the role');
  assert(await a.isVisible('.toolbar [data-action="assign"]'), 'a supervisor sees the actions');
  const all = await ids(a);
  for (const id of ['c-1', 'c-2', 'c-3', 'c-4', 'c-5', 'c-6', 'c-7']) assert(all.includes(id), `${id} is listed: ${all}`);
  assert(await a.$eval('#counts', (t) => t.textContent.includes('Billing')), 'the counts per queue are shown');
  step('sign in as demo-supervisor: name, role, the ongoing conversations, counts, live');

  // An integration token reads but may not act.
  const viewer = await newPage(URL);
  await signIn(viewer, INTEGRATION);
  assert(await viewer.textContent('#me-role') === 'integration', 'the integration role is shown');
  for (const action of ['assign', 'transfer', 'release', 'remove']) {
    assert(!(await viewer.isVisible(`.toolbar [data-action="${action}"]`)), `integration does not see ${action}`);
  }
  assert(await viewer.locator('[data-distribute]').count() === 0, 'integration does not see Distribute');
  await viewer.context().close();
  step('an integration token sees the grid read-only');

  // ---- filter by queue
  await a.selectOption('#f-queue', 'billing');
  await a.waitForFunction(() => [...document.querySelectorAll('#rows tr')].every((tr) => tr.cells[2].textContent === 'Billing'));
  const billing = await ids(a);
  assert(JSON.stringify(billing) === JSON.stringify(['c-1', 'c-2', 'c-6']), `billing shows c-1, c-2, c-6: ${billing}`);
  assert(a.url().includes('#queue=billing'), `the filter is kept in the address: ${a.url()}`);
  step('filter by queue: billing shows c-1, c-2, c-6');

  // ---- Assign c-1: candidates, why not, assign the top candidate
  await row(a, 'c-1').click();
  assert(await row(a, 'c-1').getAttribute('aria-selected') === 'true', 'a click selects the row');
  assert(!(await a.isDisabled('[data-action="assign"]')), 'Assign is enabled for an open conversation');
  assert(await a.isDisabled('[data-action="release"]'), 'Release is disabled for an open conversation');
  await a.click('[data-action="assign"]');
  await a.waitForSelector('#target-dialog[open] #cand-list input[name="target"]');
  await a.click('#why-not');
  await a.waitForSelector('#excluded-list li[data-id="bob"]');
  const bob = await a.innerText('#excluded-list li[data-id="bob"]');
  assert(/exact-skill-match|vip-cases-to-tier-2/.test(bob), `bob's exclusion names its rule: ${bob}`);
  assert(await a.locator('#cand-list input[value="bob"]').count() === 0, 'bob cannot be chosen');
  assert(await a.locator('#excluded input').count() === 0, 'the excluded list offers nothing to choose');
  const top = await a.$eval('#cand-list input[name="target"]', (i) => i.value);
  assert(top === 'ann', `the top candidate of c-1 is ann: ${top}`);
  const parts = await a.getAttribute('#cand-list label:has(input[value="ann"]) .score', 'title');
  assert(/free_capacity .* × .* = /.test(parts), `with "Why not?" ann's score shows its parts: ${parts}`);
  assert(await a.isDisabled('#target-ok'), 'nothing is chosen yet: the button is disabled');
  await a.screenshot({ path: join(SHOTS, 'assign-dialog.png') });
  await a.check('#cand-list input[value="ann"]');
  await a.click('#target-ok');
  await closed(a, 'target-dialog');
  await waitRow(a, 'c-1', { status: 'Active', rep: 'Ann Lee' }, 'after assigning c-1');
  step(`assign c-1: top candidate ann, bob excluded (${bob.replace(/\s+/g, ' ').trim().slice(0, 90)}…), row now Active · Ann Lee`);

  // ---- another supervisor transfers c-4: the first page follows without a reload
  await a.selectOption('#f-queue', '');
  await a.waitForSelector('#rows tr[data-id="c-4"]');
  const b = await newPage(URL);
  await signIn(b, SUPERVISOR);
  await row(b, 'c-4').click();
  await b.click('[data-action="transfer"]');
  await b.waitForSelector('#target-dialog[open] #cand-list');
  await b.check('#target-dialog input[name="kind"][value="queue"]');
  await b.waitForSelector('#cand-list input[value="billing"]');
  await b.check('#cand-list input[value="billing"]');
  await b.fill('#target-note', 'back to billing');
  const sent = Date.now();
  await b.click('#target-ok');
  await closed(b, 'target-dialog');
  await waitRow(a, 'c-4', { status: 'Open', queue: 'Billing', rep: '—' }, 'the first page after the second transferred c-4');
  const followMs = Date.now() - sent;
  assert(followMs < 2000, `the first page followed within 2 s (took ${followMs} ms)`);
  step(`a second context transfers c-4 to billing: the first page shows it in ${followMs} ms, without a reload`);
  // The counts follow too (Billing: c-4 open).
  await a.waitForFunction(() => document.querySelector('#counts tr[data-queue="billing"]')?.cells[1].textContent === '1');
  await a.screenshot({ path: join(SHOTS, 'grid.png') });

  // ---- a stale row: the second context acts first, the first is told plainly
  await row(a, 'c-5').click();
  await a.click('[data-action="assign"]');
  await a.waitForSelector('#target-dialog[open] #cand-list input[value="ann"]');
  await row(b, 'c-5').click();
  await b.click('[data-action="assign"]');
  await b.waitForSelector('#target-dialog[open] #cand-list input[value="ann"]');
  await b.check('#cand-list input[value="ann"]');
  await b.click('#target-ok');
  await closed(b, 'target-dialog');
  // The open dialog hears of the change at once (the live feed) ...
  await a.waitForFunction(() => /c-5 changed after you opened this/.test(document.querySelector('#target-dialog [data-stale]').textContent));
  // ... and sending anyway is refused (If-Match), said plainly.
  await a.check('#cand-list input[value="ann"]');
  await a.click('#target-ok');
  await a.waitForFunction(() => document.querySelector('#target-result').textContent.length > 0);
  const conflict = await a.textContent('#target-result');
  assert(/Someone else changed c-5/.test(conflict) && /nothing was done/.test(conflict) && /Active/.test(conflict),
    `the conflict is told plainly: ${conflict}`);
  assert(await a.isDisabled('#target-ok'), 'the stale assignment cannot be sent again');
  await a.screenshot({ path: join(SHOTS, 'conflict.png') });
  await a.keyboard.press('Escape');
  await closed(a, 'target-dialog');
  await waitRow(a, 'c-5', { status: 'Active', rep: 'Ann Lee' }, 'the stale row after the conflict');
  step(`a stale row: the open dialog warned at once; sending anyway: "${conflict.slice(0, 110)}…"`);

  // ---- bulk release of two rows
  await row(a, 'c-1').click();
  await row(a, 'c-2').click({ modifiers: ['Control'] });
  assert(await a.textContent('#selection') === '2 conversations selected', 'two rows are selected');
  await a.click('[data-action="release"]');
  await a.waitForSelector('#confirm-dialog[open]');
  await a.fill('#confirm-note', 'end of shift');
  await a.click('#confirm-ok');
  await a.waitForSelector('#results-dialog[open]');
  const results = await a.$$eval('#results-rows tr', (trs) => trs.map((tr) => `${tr.dataset.id}:${tr.cells[1].textContent}`));
  assert(results.length === 2 && results.every((r) => r.includes('Released (200)')), `both released: ${results}`);
  await a.click('#results-dialog button');
  await waitRow(a, 'c-1', { status: 'Open', rep: '—' }, 'c-1 after the bulk release');
  await waitRow(a, 'c-2', { status: 'Open', rep: '—' }, 'c-2 after the bulk release');
  step(`bulk release of c-1 and c-2: ${results.join(', ')}`);

  // ---- keyboard only: assign c-7 to its top candidate
  // From a fresh load (the token stays in sessionStorage for the tab), with the keyboard only.
  await a.reload();
  await a.waitForSelector('#rows tr[data-id="c-7"]');
  await a.waitForSelector('#live[data-state="live"]');
  await a.keyboard.press('Tab'); // the skip link
  assert(await a.evaluate(() => document.activeElement.classList.contains('skip')), 'Tab reaches the skip link first');
  await a.keyboard.press('Enter');
  assert(await a.evaluate(() => document.activeElement.closest('#rows') !== null), 'the skip link moves focus into the grid');
  await a.keyboard.press('Escape'); // clear the selection
  await a.keyboard.press('Home');
  for (let i = 0; i < 30 && (await a.evaluate(() => document.activeElement.dataset.id)) !== 'c-7'; i++) {
    await a.keyboard.press('ArrowDown');
  }
  assert(await a.evaluate(() => document.activeElement.dataset.id) === 'c-7', 'the arrows reach c-7');
  await a.keyboard.press('Space');
  assert(await row(a, 'c-7').getAttribute('aria-selected') === 'true', 'Space selects the row');
  for (let i = 0; i < 12 && (await a.evaluate(() => document.activeElement.dataset.action)) !== 'assign'; i++) {
    await a.keyboard.press('Shift+Tab');
  }
  assert(await a.evaluate(() => document.activeElement.dataset.action) === 'assign', 'Shift+Tab reaches Assign');
  await a.keyboard.press('Enter');
  await a.waitForSelector('#target-dialog[open] #cand-list input[value="carla"]');
  for (let i = 0; i < 30 && (await a.evaluate(() => document.activeElement.name)) !== 'target'; i++) {
    await a.keyboard.press('Tab');
  }
  assert(await a.evaluate(() => document.activeElement.value) === 'carla', 'Tab reaches the top candidate, carla');
  await a.keyboard.press('Space');
  for (let i = 0; i < 10 && (await a.evaluate(() => document.activeElement.id)) !== 'target-ok'; i++) {
    await a.keyboard.press('Tab');
  }
  assert(await a.evaluate(() => document.activeElement.id) === 'target-ok', 'Tab reaches the Assign button');
  await a.keyboard.press('Enter');
  await closed(a, 'target-dialog');
  await waitRow(a, 'c-7', { status: 'Active', rep: 'Carla Ruiz' }, 'c-7 after the keyboard-only assign');
  assert(await a.evaluate(() => document.activeElement !== document.body), 'focus is given back after the dialog');
  // Tab stays inside an open dialog.
  await a.keyboard.press('Escape');
  await row(a, 'c-3').click();
  await a.click('[data-action="transfer"]');
  await a.waitForSelector('#target-dialog[open]');
  for (let i = 0; i < 40; i++) {
    await a.keyboard.press('Tab');
    assert(await a.evaluate(() => document.activeElement.closest('#target-dialog') !== null), 'Tab stays in the dialog');
  }
  await a.keyboard.press('Escape');
  await closed(a, 'target-dialog');
  assert(await a.evaluate(() => document.activeElement.dataset.action) === 'transfer', 'focus returns to Transfer');
  step('keyboard only: skip link, arrows, Space, Shift+Tab to Assign, Tab to carla, Space, Enter; focus trapped and restored');

  // ---- history and rules panels
  await row(a, 'c-1').click();
  await a.click('[data-action="history"]');
  await a.waitForSelector('#history-body li');
  const history = await a.textContent('#history-body');
  assert(/assign by demo-supervisor/.test(history) && /release by demo-supervisor/.test(history) && /end of shift/.test(history),
    `c-1's history shows the assign and the release with its note: ${history}`);
  await a.click('#rules-toggle');
  await a.waitForSelector('#rules-version');
  const rules = await a.textContent('#rules-body');
  assert(/vip-scoring/.test(rules) && /presence\.toml/.test(rules), `the rules panel lists files and plugins: ${rules}`);
  step('history of c-1 and the rules panel (version, files, plugins with calls and failures)');

  // A rule file with an error: the panel shows the reload's error at file:line:column,
  // the rules in force unchanged; fixing the file clears it.
  const broken = join(RULES_DIR, 'zz-broken.toml');
  writeFileSync(broken, '[[rule]]\nid = "broken"\ntarget = "representative"\n[rule.require]\npresence = ["availble"]\n');
  const where = await until(async () => {
    await a.click('#rules-panel .close');
    await a.click('#rules-toggle');
    await a.waitForSelector('#rules-version');
    return a.locator('.last-error .where').count().then((n) => (n ? a.textContent('.last-error .where') : null));
  }, 'the failed reload to show in the rules panel');
  assert(/zz-broken\.toml:\d+:\d+/.test(where), `the error is located: ${where}`);
  unlinkSync(broken);
  step(`the rules panel shows a failed reload at ${where}`);

  // ---- a lost connection resumes from the last position
  await a.evaluate(() => window.switchboardLive.drop());
  await a.waitForSelector('#live[data-state="reconnecting"]');
  const moved = await api('POST', '/v1/conversations/c-3/transfer', SUPERVISOR, { queue: 'tech-support' });
  assert(moved.status === 422 || moved.status === 200, `transfer of c-3: ${moved.status} ${JSON.stringify(moved.json)}`);
  const released = await api('POST', '/v1/conversations/c-5/release', SUPERVISOR, { note: 'while the page was offline' });
  assert(released.status === 200, `release of c-5: ${released.status} ${JSON.stringify(released.json)}`);
  await a.waitForSelector('#live[data-state="live"]');
  await waitRow(a, 'c-5', { status: 'Open', rep: '—' }, 'c-5 after a change made while the stream was down');
  const resumed = streams.at(-1);
  assert(resumed && /^\d+$/.test(resumed['last-event-id'] || ''), `the stream resumed with Last-Event-ID: ${JSON.stringify(resumed)}`);
  step(`a dropped stream shows "reconnecting", resumes after Last-Event-ID ${resumed['last-event-id']} and applies what it missed`);

  // ---- distribute a queue: dry run, then confirm
  await a.waitForSelector('[data-distribute="billing"]');
  await a.click('[data-distribute="billing"]');
  await a.waitForSelector('#distribute-dialog[open]');
  assert(await a.isDisabled('#distribute-ok'), 'Distribute waits for a dry run');
  await a.click('#distribute-dry');
  await a.waitForFunction(() => document.querySelector('#distribute-plan').textContent.includes('Dry run'));
  const plan = await a.textContent('#distribute-plan');
  const before = await cells(a, 'c-1');
  assert(before.status === 'Open', 'a dry run changes nothing');
  await a.click('#distribute-ok');
  await a.waitForFunction(() => document.querySelector('#distribute-plan').textContent.includes('Done'));
  const done = await a.textContent('#distribute-plan');
  await a.keyboard.press('Escape');
  step(`distribute billing: ${plan.slice(0, 80)}… then ${done.slice(0, 60)}…`);

  // ---- several rows assigned at once: one bulk request, one result per row
  await a.waitForSelector('#distribute-dialog[open]', { state: 'detached' });
  await row(a, 'c-3').click();
  await row(a, 'c-5').click({ modifiers: ['Control'] });
  await a.click('[data-action="assign"]');
  await a.waitForSelector('#target-dialog[open] #cand-list input[value="carla"]');
  const about = await a.textContent('#target-about');
  assert(/each of the 2 is checked against the rules on its own/.test(about), `the dialog says how several rows go: ${about}`);
  await a.check('#cand-list input[value="carla"]');
  await a.click('#target-ok');
  await a.waitForSelector('#results-dialog[open]');
  const mixed = await a.$$eval('#results-rows tr', (trs) => trs.map((tr) => `${tr.dataset.id}:${tr.cells[1].textContent}`));
  assert(mixed.length === 2 && /^c-3:Assigned \(200\)/.test(mixed[0]) && /^c-5:Refused \(422 not_eligible\)/.test(mixed[1]),
    `c-3 assigned, c-5 refused by the rules: ${mixed}`);
  await a.keyboard.press('Escape');
  await waitRow(a, 'c-3', { status: 'Active', rep: 'Carla Ruiz' }, 'c-3 after the bulk assign');
  await waitRow(a, 'c-5', { status: 'Open', rep: '—' }, 'c-5 after its refusal');
  step(`bulk assign of c-3 and c-5 to carla: ${mixed.map((m) => m.slice(0, 60)).join(' | ')}`);

  // ---- a phone-sized screen
  await a.setViewportSize({ width: 390, height: 844 });
  await a.click('#rules-panel .close');
  await a.evaluate(() => window.scrollTo(0, 0));
  const overflow = await a.evaluate(() => document.documentElement.scrollWidth);
  assert(overflow <= 390, `no sideways scrolling of the page at 390 px (width ${overflow})`);
  assert(await a.isVisible('[data-action="assign"]') && await a.isVisible('#rows tr'), 'toolbar and grid are usable at 390 px');
  await a.screenshot({ path: join(SHOTS, 'grid-390.png') });
  step('usable at 390×844: no sideways scrolling, toolbar and grid visible');
  await b.context().close();

  // ---- first render of 1,000 ongoing conversations
  const perf = await newPage(`${PERF_URL}/#size=1000`);
  await perf.fill('#token', SUPERVISOR);
  await perf.press('#token', 'Enter');
  const samples = [];
  for (let run = 0; run < 5; run++) {
    if (run > 0) await perf.reload(); // the token stays in sessionStorage: signs in again
    await perf.waitForFunction(() => document.body.dataset.firstRender === '1000', null, { timeout: 30_000 });
    samples.push(await perf.evaluate(() => {
      const m = (name) => performance.getEntriesByName(name)[0];
      return { firstRender: m('sb:first-render').duration, fetch: m('sb:fetch').duration, build: m('sb:build').duration, paint: m('sb:paint').duration, sinceNavigation: m('sb:painted').startTime };
    }));
  }
  assert(await perf.locator('#rows tr').count() === 1000, 'the grid shows 1,000 rows');
  await perf.screenshot({ path: join(SHOTS, 'grid-1000.png') });
  // Keyset paging with the API's cursors: 250 a page, on and back.
  await perf.selectOption('#f-size', '250');
  await perf.waitForFunction(() => document.querySelectorAll('#rows tr').length === 250);
  const firstPage = await ids(perf);
  await perf.click('#next');
  await perf.waitForFunction(() => document.querySelector('#rows tr')?.dataset.id === 'p-0250');
  const second = await ids(perf);
  assert(second.length === 250 && second.at(-1) === 'p-0499', `page 2 is p-0250 to p-0499: ${second[0]}…${second.at(-1)}`);
  assert(await perf.textContent('#page-info') === 'Page 2 · rows 251–500', await perf.textContent('#page-info'));
  await perf.click('#prev');
  await perf.waitForFunction(() => document.querySelector('#rows tr')?.dataset.id === 'p-0000');
  assert(JSON.stringify(await ids(perf)) === JSON.stringify(firstPage), 'Previous shows the first page again');
  step('keyset paging: 250 a page, Next to rows 251-500, Previous back');
  // Sign out forgets the token.
  await perf.click('#sign-out');
  await perf.waitForSelector('#signin:not([hidden])');
  assert(await perf.evaluate(() => sessionStorage.length) === 0, 'the token is gone from sessionStorage');
  await perf.reload();
  await perf.waitForSelector('#signin:not([hidden])');
  step('sign out: the token is forgotten, a reload asks for one');
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const fmt = (k) => `median ${median(samples.map((s) => s[k])).toFixed(1)} ms (${samples.map((s) => s[k].toFixed(1)).join(', ')})`;
  console.log(`first render of 1000 conversations (request to painted rows): ${fmt('firstRender')}`);
  console.log(`  the API answer (1000 conversations, parsed): ${fmt('fetch')}`);
  console.log(`  building the 1000 rows: ${fmt('build')}`);
  console.log(`  style, layout and paint: ${fmt('paint')}`);
  console.log(`  from navigation start, sign-in included: ${fmt('sinceNavigation')}`);
  await perf.context().close();

  if (problems.length) fail(`the pages reported problems:\n  ${problems.join('\n  ')}`);
  console.log(`screenshots: ${SHOTS}`);
} catch (e) {
  console.log(`not ok - ${e.message}`);
  if (problems.length) console.log(`also:\n  ${problems.join('\n  ')}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
