// The panel in a real browser: sign up, configure two services, see the plan, deploy and
// watch the progress reach "succeeded", turn one service off keeping its data, delete the
// account. Run by crates/panel/tests/it/browser.rs, which starts the panel and passes:
//   PANEL_URL        the panel's base URL
//   SCREENSHOTS      the directory the screenshots of every page go to
//   CHROMIUM         the browser (default /usr/bin/chromium)
// Exits non-zero, with the step that failed, when anything is not as expected.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.PANEL_URL;
const shots = process.env.SCREENSHOTS;
if (!base || !shots) {
  console.error('PANEL_URL and SCREENSHOTS must be set');
  process.exit(2);
}
const operator = 'e2e-club';
const password = 'correct horse battery staple';
// A deployment on the sandbox takes seconds; this bounds a stuck one.
const deployTimeout = 120_000;

const profile = mkdtempSync(join(tmpdir(), 'fediversity-e2e-profile-'));
// A persistent context is how Playwright takes a --user-data-dir: a new, empty one.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
let shot = 0;
let step = 'starting';
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(30_000);

/** Saves a full-page screenshot named after the step, numbered in order. */
async function screenshot(name) {
  shot += 1;
  const path = join(shots, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot ${path}`);
}

/** Fails the run unless the page shows `text`. */
async function expectText(text) {
  await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible' });
}

/** Expects the browser to be on `path` (after redirects). */
function expectPath(path) {
  const actual = new URL(page.url()).pathname;
  if (actual !== path) throw new Error(`expected to be on ${path}, on ${actual}`);
}

/** Clicks Deploy on the plan page and waits for the live progress to report success. */
async function deployAndWatch(name) {
  await Promise.all([page.waitForURL(/\/deployments\/\d+$/), page.getByRole('button', { name: 'Deploy' }).click()]);
  await screenshot(`${name}-progress`);
  await page.locator('#report').waitFor({ state: 'visible', timeout: deployTimeout });
  const outcome = await page.locator('#report').getAttribute('class');
  if (!outcome.includes('succeeded')) {
    throw new Error(`the deployment did not succeed: ${await page.locator('#report').innerText()}`);
  }
  await expectText('Succeeded in');
  await screenshot(`${name}-succeeded`);
}

/** Fills the configuration form's common fields. */
async function fillConfiguration() {
  await page.fill('#name', 'E2E <Photo> Club');
  await page.fill('#domain', 'e2e.example.org');
  await page.fill('#admin_username', 'boss');
  await page.fill('#admin_email', 'boss@example.org');
  await page.fill('#time_zone', 'Europe/Amsterdam');
  await page.check('input[name=window_0_day_sun]');
  await page.fill('#window_0_start', '02:00');
  await page.fill('#window_0_duration', '120');
}

try {
  step = 'sign up';
  await page.goto(`${base}/sign-up`);
  await page.fill('#operator', operator);
  await page.fill('#email', `admin@${operator}.example`);
  await page.fill('#password', password);
  await screenshot('sign-up');
  // A new operator is taken straight to its configuration form.
  await Promise.all([page.waitForURL(`${base}/operators/${operator}/configure`), page.getByRole('button', { name: 'Sign up' }).click()]);

  step = 'configure two services';
  await fillConfiguration();
  for (const service of ['mastodon', 'pixelfed']) {
    await page.check(`input[name=${service}_enable]`);
    await page.check(`input[name=${service}_retention][value=keep]`);
  }
  await screenshot('configure');
  await Promise.all([page.waitForURL(`${base}/operators/${operator}/plan`), page.getByRole('button', { name: 'Save and see the plan' }).click()]);

  step = 'see the plan';
  await expectText('What deploying configuration version 1 will do');
  await expectText('Create the virtual machine vm.mastodon');
  await expectText('Create the virtual machine vm.pixelfed');
  await screenshot('plan');

  step = 'deploy and watch the progress';
  await deployAndWatch('deploy');
  await page.goto(`${base}/operators/${operator}`);
  await expectText('https://mastodon.e2e.example.org');
  await expectText('https://pixelfed.e2e.example.org');
  // The organisation name is shown as text, never as markup.
  await screenshot('dashboard-deployed');

  step = 'turn Pixelfed off, keeping its data, and add a maintenance window';
  await page.goto(`${base}/operators/${operator}/configure`);
  if ((await page.inputValue('#name')) !== 'E2E <Photo> Club') throw new Error('the form lost the saved name');
  await page.uncheck('input[name=pixelfed_enable]');
  await page.check('input[name=pixelfed_retention][value=keep]');
  // The form ends with an empty row: filling it in adds a window, no JavaScript needed.
  await page.check('input[name=window_1_day_wed]');
  await page.fill('#window_1_start', '03:30');
  await page.fill('#window_1_duration', '60');
  await screenshot('configure-pixelfed-off');
  await Promise.all([page.waitForURL(`${base}/operators/${operator}/plan`), page.getByRole('button', { name: 'Save and see the plan' }).click()]);
  await expectText('What deploying configuration version 2 will do');
  await expectText('keep its data');
  await screenshot('plan-pixelfed-off');
  await deployAndWatch('pixelfed-off');
  await page.goto(`${base}/operators/${operator}/history`);
  await expectText('services.pixelfed.enable: true → false');
  await expectText('Sun from 02:00 for 120 min; Wed from 03:30 for 60 min');
  await screenshot('history');

  step = 'delete the account';
  await page.goto(`${base}/operators/${operator}/delete`);
  await expectText('This cannot be undone');
  await page.fill('#confirm', operator);
  await screenshot('delete-confirm');
  // The deletion ends by removing the account's users, which ends this session. A browser
  // slower than the (sandbox) deletion opens the page's event stream after that: the stream is
  // refused, so the page cannot show the report. Then the account being gone (below) is what
  // is checked.
  const stream = page.waitForResponse((r) => r.url().includes('/events'), { timeout: deployTimeout });
  await Promise.all([page.waitForURL(/\/deployments\/\d+$/), page.getByRole('button', { name: 'Delete the account' }).click()]);
  const events = await stream;
  if (events.status() === 200) {
    await page.locator('#report.succeeded').waitFor({ state: 'visible', timeout: deployTimeout });
    await expectText('Kept bucket');
  } else {
    console.log(`the account was gone before the page's event stream opened (HTTP ${events.status()}): no report to show`);
  }
  await screenshot('delete-report');
  await page.goto(`${base}/operators/${operator}`);
  expectPath('/sign-in');
  await screenshot('signed-out');
  console.log(`ok: ${shot} screenshots`);
} catch (error) {
  console.error(`failed at "${step}" on ${page.url()}: ${error.message}`);
  await screenshot('failure').catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
