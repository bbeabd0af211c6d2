// Looks at a running incidentd's status page in a real browser: Debian's chromium, driven by
// playwright-core, with axe-core checking accessibility. Usage:
//   node status.mjs <base-url> <incident-reference> <screenshot-dir> [<reference-with-a-postmortem>]
// with INCIDENTD_BROWSER_TOOLS naming the folder whose node_modules hold playwright-core and
// axe-core, and CHROMIUM the browser (default /usr/bin/chromium). Prints one JSON object
// ({checks: [{name, ok, detail}]}) and exits 1 when a check failed.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const [base, reference, shots, postmortem] = process.argv.slice(2);
const tools = process.env.INCIDENTD_BROWSER_TOOLS;
const require = createRequire(path.join(tools, 'package.json'));
const { chromium } = require('playwright-core');
const axePath = require.resolve('axe-core/axe.min.js');
mkdirSync(shots, { recursive: true });

const checks = [];
const check = (name, ok, detail = '') => checks.push({ name, ok: Boolean(ok), detail: String(detail) });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

// Opens a page in a fresh context; returns it.
async function open(url, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true, ...options });
  const page = await context.newPage();
  const response = await page.goto(url, { waitUntil: 'load' });
  return { page, context, response };
}

// Runs axe on the page and records its serious and critical violations.
async function accessible(name, page) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(`${name}: axe finds no serious or critical violation`, bad.length === 0,
    bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')}`).join(' | '));
}

try {
  // The English page, light.
  {
    const { page, context, response } = await open(`${base}/status`, { locale: 'en-US', colorScheme: 'light' });
    check('status page answers 200', response.status() === 200, response.status());
    const text = await page.innerText('body');
    check('an active incident is shown', text.includes('Card payments failing'), text.slice(0, 200));
    check('its ETA is shown', text.includes('Expected resolution'), '');
    check('its workaround is shown', text.includes('Pay by bank transfer'), '');
    check('the customer estimate is rounded', text.includes('about 4,300 customers') && !text.includes('4321'), '');
    const bars = await page.$$eval('.component', (rows) => rows.map((r) => ({
      name: r.querySelector('.name')?.textContent ?? '',
      cells: r.querySelectorAll('ol.bar li').length,
      today: r.querySelector('ol.bar li:last-child')?.className ?? '',
      tooltip: r.querySelector('ol.bar li:last-child')?.getAttribute('title') ?? '',
      text: r.querySelector('.days')?.innerText ?? '',
    })));
    check('every component has a 90-day uptime bar', bars.length >= 3 && bars.every((b) => b.cells === 90),
      JSON.stringify(bars.map((b) => b.cells)));
    check('each bar reads as visible text, not only colour', bars.every((b) => /100\s?%/.test(b.text)),
      JSON.stringify(bars.map((b) => b.text)));
    const outage = bars.find((b) => b.today === 's4');
    check('today shows the outage in the bar, with its figure and incident as text and tooltip',
      outage && outage.text.includes(reference) && /Major outage/.test(outage.text) && outage.tooltip.includes(reference),
      JSON.stringify(outage ?? bars));
    await page.screenshot({ path: path.join(shots, 'status-en-light.png'), fullPage: true });
    await accessible('English page', page);
    await context.close();
  }
  // Dark mode.
  {
    const { page, context } = await open(`${base}/status`, { colorScheme: 'dark' });
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    check('dark mode has a dark background', r + g + b < 150, bg);
    await page.screenshot({ path: path.join(shots, 'status-en-dark.png'), fullPage: true });
    await accessible('Dark page', page);
    await context.close();
  }
  // A phone: 375 px wide, nothing wider than the screen.
  {
    const { page, context } = await open(`${base}/status`, { viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    check('375 px wide: no horizontal scrolling', width <= 375, width);
    await page.screenshot({ path: path.join(shots, 'status-375px.png'), fullPage: true });
    await accessible('Phone page', page);
    await context.close();
  }
  // German, chosen by Accept-Language.
  {
    const { page, context, response } = await open(`${base}/status`, { locale: 'de-DE', extraHTTPHeaders: { 'Accept-Language': 'de-DE,de;q=0.9' } });
    const text = await page.innerText('body');
    const lang = await page.getAttribute('html', 'lang');
    check('German page from Accept-Language', lang === 'de' && text.includes('Aktuelle Störungen'), `${lang} ${response.headers()['content-language']}`);
    check('German figures read German', text.includes('etwa 4.300 Kunden'), '');
    await page.screenshot({ path: path.join(shots, 'status-de.png'), fullPage: true });
    await accessible('German page', page);
    await context.close();
  }
  // Without JavaScript the page is the same.
  {
    const { page, context } = await open(`${base}/status`, { javaScriptEnabled: false });
    const text = await page.innerText('body');
    check('works with JavaScript off', text.includes('Card payments failing') && text.includes('Checkout'), '');
    await context.close();
  }
  // The incident's own page and the history.
  {
    const { page, context, response } = await open(`${base}/status/incidents/${reference}`);
    const text = await page.innerText('body');
    const updates = await page.$$eval('.updates li', (items) => items.length);
    check('incident page shows its public updates', response.status() === 200 && text.includes(reference) && updates >= 2,
      `${response.status()}, ${updates} updates`);
    await page.screenshot({ path: path.join(shots, 'incident.png'), fullPage: true });
    await accessible('Incident page', page);
    await context.close();
  }
  // The page of an incident with a published postmortem: light and dark, English and German,
  // on a phone.
  if (postmortem) {
    for (const [name, options, lang, heading] of [
      ['postmortem-en', { colorScheme: 'light' }, 'en', 'Published'],
      ['postmortem-de', { colorScheme: 'dark' }, 'de', 'Veröffentlicht'],
      ['postmortem-375px', { viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true }, 'en', 'Postmortem'],
    ]) {
      const { page, context, response } = await open(`${base}/status/incidents/${postmortem}?lang=${lang}`, options);
      const section = await page.$eval('.postmortem', (s) => s.innerText).catch(() => '');
      check(`${name}: the postmortem section shows its summary`,
        response.status() === 200 && section.includes(heading) && section.includes('rebuilt in the background'), section);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(`${name}: no horizontal scrolling`, width <= (options.viewport?.width ?? 1280), width);
      await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
      await accessible(`Postmortem page (${name})`, page);
      await context.close();
    }
  }
  {
    const { page, context, response } = await open(`${base}/status/history?lang=de`);
    check('history page answers', response.status() === 200, response.status());
    await page.screenshot({ path: path.join(shots, 'history-de.png'), fullPage: true });
    await accessible('History page', page);
    await context.close();
  }
} catch (e) {
  check('the browser run completed', false, e.stack || e);
} finally {
  await browser.close();
}

console.log(JSON.stringify({ checks }));
process.exit(checks.every((c) => c.ok) ? 0 : 1);
