// The live console in a real headless browser: Debian's chromium (/usr/bin/chromium) driven
// by playwright-core, never a downloaded browser. An engine runs; the page is opened, asks for
// a token and is given the viewer's; a sale happens over HTTP (holds, a pay, a sell-out) and
// the page shows it as it happens: the SKU's reserved and sold figures, its curve, the stock
// event; after a reload, the engine's history first. No console error and no page error along the way. A screenshot is kept as
// test-artifacts/console.png. Waits are generous polls, never timings.

import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { TOKENS, api, sleep, startEngine, stopAllEngines } from './support/engine-process.js';
import { createSku, reserveOk, uniq } from './support/http-kit.js';

const chromiumPath = '/usr/bin/chromium';
const artifacts = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-artifacts');
const deadline = 30_000;

let browser: Browser | null = null;

afterAll(async () => {
  await browser?.close();
  await stopAllEngines();
});

/** The page's problems: console errors and uncaught exceptions, as they happen. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return problems;
}

const figure = (page: Page, sku: string, field: string): Promise<string | null> =>
  page.locator(`#skus tr[data-sku="${sku}"] td[data-field="${field}"]`).getAttribute('data-value', { timeout: deadline });

describe('the live console in a browser', () => {
  it('loads with no error, takes a viewer token, and shows a sale as it happens', async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(`${chromiumPath} is missing: install Debian's chromium package (apt-get install chromium); this test never downloads a browser`);
    }
    const engine = await startEngine({ env: { FLASH_BUYER_RPS: '1000' } });
    const a = api(engine.url);
    const sku = uniq('live-sneaker');
    const last = uniq('live-cap');
    await createSku(a, sku, { stock: 40, lowStockThreshold: 10 });
    await createSku(a, last, { stock: 3 });

    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = watch(page);

    await page.goto(`${engine.url}/console`);
    // No token yet: the page asks for one.
    await page.locator('#login').waitFor({ state: 'visible', timeout: deadline });
    await page.fill('#token', TOKENS.viewer);
    await page.click('#login button[type="submit"]');
    await page.locator('#status[data-state="live"]').waitFor({ timeout: deadline });
    await page.locator(`#skus tr[data-sku="${sku}"]`).waitFor({ timeout: deadline });
    expect(await figure(page, sku, 'reserved')).toBe('0');

    // The sale: holds arrive over a few seconds, some are paid, another SKU sells out.
    const held: string[] = [];
    for (let i = 0; i < 8; i++) {
      held.push((await reserveOk(a, { sku, buyerId: `live-buyer-${i}`, qty: 3 })).reservationId);
      await sleep(300);
    }
    for (const id of held.slice(0, 3)) expect((await a.post(`/v1/reservations/${id}/pay`, {}, TOKENS.payments)).status).toBe(200);
    await reserveOk(a, { sku: last, buyerId: 'live-last', qty: 3 });
    expect((await a.post('/v1/reservations', { sku: last, buyerId: 'live-late', qty: 1 })).status).toBe(409);

    // The page shows it: 15 held, 9 sold, 16 left; the sell-out in the events; the curves drawn.
    await page.locator(`#skus tr[data-sku="${sku}"] td[data-field="sold"][data-value="9"]`).waitFor({ timeout: deadline });
    await page.locator(`#skus tr[data-sku="${sku}"] td[data-field="reserved"][data-value="15"]`).waitFor({ timeout: deadline });
    expect(await figure(page, sku, 'available')).toBe('16');
    await page.locator('#events li', { hasText: last }).waitFor({ timeout: deadline });
    await page.locator(`#sku-charts figure[data-sku="${sku}"] canvas`).waitFor({ timeout: deadline });
    await page.locator('#refusals tr[data-code="sold_out"]').waitFor({ timeout: deadline });
    await page.locator('#chart-rate canvas').waitFor({ timeout: deadline });

    // A couple more ticks, so the curves in the screenshot run on past the sale.
    await sleep(2500);
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'console.png'), fullPage: true });

    // A reload keeps the token of this tab: straight back to live figures, and the engine's
    // history (the stock events so far) comes first.
    await page.reload();
    await page.locator('#status[data-state="live"]').waitFor({ timeout: deadline });
    await page.locator(`#skus tr[data-sku="${sku}"] td[data-field="sold"][data-value="9"]`).waitFor({ timeout: deadline });
    await page.locator('#events li', { hasText: last }).waitFor({ timeout: deadline });
    await page.locator(`#sku-charts figure[data-sku="${sku}"] canvas`).waitFor({ timeout: deadline });
    expect(problems).toEqual([]);
    // Signing out forgets the token.
    await page.click('#sign-out');
    await page.locator('#login').waitFor({ state: 'visible', timeout: deadline });
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    expect(problems).toEqual([]);
  });
});
