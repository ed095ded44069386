// The hot-SKU sell-out of bench:http: one SKU, a fixed stock, maxPerBuyer 1, and twice as
// many reserve calls as units, each from a distinct buyer. Exactly `stock` calls must get
// 201, every other one 409 sold_out, and the SKU must end with reserved + sold == stock.

import { progress } from './bench-report.js';
import { call, shopToken } from './engine-under-test.js';
import { runLoad, type LoadFigures, type LoadSettings } from './http-load.js';

export interface HotSettings {
  sku: string;
  stock: number;
  maxPerBuyer: number;
  requests: number;
}

export interface HotSellOut {
  settings: HotSettings;
  load: LoadFigures;
  created201: number;
  after: { onHand: number; reserved: number; sold: number; available: number };
  oversold: boolean;
  ok: boolean;
  problems: string[];
}

function problemsOf(hot: HotSettings, f: LoadFigures, created201: number, after: HotSellOut['after']): string[] {
  const problems: string[] = [];
  if (created201 !== hot.stock) problems.push(`${created201} reserve calls got 201, expected exactly ${hot.stock}`);
  if (after.reserved + after.sold !== hot.stock) problems.push(`reserved ${after.reserved} + sold ${after.sold} != ${hot.stock}`);
  if (after.reserved + after.sold > after.onHand) problems.push(`reserved + sold ${after.reserved + after.sold} > onHand ${after.onHand}`);
  if (after.available !== 0) problems.push(`available is ${after.available}, expected 0`);
  if (f.requests !== hot.requests) problems.push(`${f.requests} responses for ${hot.requests} requests`);
  if (f.errors > 0 || f.timeouts > 0) problems.push(`${f.errors} errors, ${f.timeouts} timeouts`);
  const others = Object.entries(f.errorCodes ?? {}).filter(([code]) => code !== 'sold_out');
  if (others.length > 0) problems.push(`refusals other than sold_out: ${JSON.stringify(Object.fromEntries(others))}`);
  return problems;
}

export async function hotSellOut(port: number, hot: HotSettings, load: LoadSettings): Promise<HotSellOut> {
  const put = await call(port, 'PUT', `/v1/skus/${hot.sku}`, { stock: hot.stock, maxPerBuyer: hot.maxPerBuyer });
  if (put.status !== 201) throw new Error(`PUT ${hot.sku} answered ${put.status}: ${JSON.stringify(put.json)}`);
  progress(`hot SKU: ${hot.requests} reserve calls by distinct buyers for ${hot.stock} units (maxPerBuyer ${hot.maxPerBuyer})`);
  const f = await runLoad('hot-sku sell-out', `http://127.0.0.1:${port}`, { ...load, amount: hot.requests }, { skuOf: () => hot.sku, buyerPrefix: 'h', token: shopToken }, true);
  const { json: v } = await call(port, 'GET', `/v1/skus/${hot.sku}`);
  const after = { onHand: v.onHand as number, reserved: v.reserved as number, sold: v.sold as number, available: v.available as number };
  const created201 = f.statuses['201'] ?? 0;
  const problems = problemsOf(hot, f, created201, after);
  const oversold = created201 > hot.stock || after.reserved + after.sold > hot.stock || after.reserved + after.sold > after.onHand || after.available < 0;
  progress(`hot SKU: ${created201} x 201, after: ${JSON.stringify(after)}${problems.length === 0 ? ': exact' : `; PROBLEMS: ${problems.join('; ')}`}`);
  return { settings: hot, load: f, created201, after, oversold, ok: problems.length === 0, problems };
}
