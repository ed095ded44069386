// What deploy/ gives operators to watch the engine: the Grafana dashboard
// (deploy/grafana/flash-sale.json), the Prometheus alert rules and their unit tests
// (deploy/prometheus/alerts.yml, alerts.test.yml), the example scrape configs, and the
// Kubernetes and compose settings that go with them (a NetworkPolicy that lets Prometheus
// in, the ERP settings).
//
// promtool checks the rules and configs and runs the rules' unit tests. It must be
// installed (CI installs it; Debian: apt-get install prometheus); without it this suite
// FAILS, saying so, rather than skipping. PROMTOOL=/path/to/promtool picks another one.
//
// Every metric name an expression of the dashboard or of the alerts uses must be one that
// a running engine really exports: the suite starts one (with an ERP configured, so the
// hand-off's metrics are registered), makes a reserve, and reads the metric families of
// its /metrics.

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';

import { api, freePort, startEngine, stopAllEngines, TOKENS, type Engine } from './support/engine-process.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const deploy = join(root, 'deploy');
const promDir = join(deploy, 'prometheus');
const dashboardFile = join(deploy, 'grafana', 'flash-sale.json');
const promtoolBin = process.env.PROMTOOL ?? 'promtool';

// ---------------------------------------------------------------------------------------
// promtool

interface Run { status: number | null; out: string }

function promtool(...args: string[]): Run {
  const r = spawnSync(promtoolBin, args, { encoding: 'utf8', cwd: root, timeout: 60_000 });
  if (r.error !== undefined) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing
      ? `promtool is not installed (looked for "${promtoolBin}"${process.env.PROMTOOL === undefined ? ' on PATH' : ', from PROMTOOL'}): this suite needs it to check deploy/prometheus. `
        + 'Install it (Debian/Ubuntu: apt-get install prometheus; or the promtool binary of a Prometheus release) or set PROMTOOL=/path/to/promtool.'
      : `running ${promtoolBin} ${args.join(' ')} failed: ${r.error.message}`);
  }
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function expectPromtoolOk(...args: string[]): string {
  const r = promtool(...args);
  expect(r.status, `promtool ${args.join(' ')}:\n${r.out}`).toBe(0);
  return r.out;
}

// ---------------------------------------------------------------------------------------
// Metric names in PromQL

const promqlKeywords = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan', 'atan2',
]);

/**
 * The metric names a PromQL expression selects: every identifier that is not a function,
 * aggregation or keyword, once strings, label matchers, ranges, grouping lists, offsets and
 * Grafana variables are taken out.
 */
function metricNamesOf(expr: string): string[] {
  let e = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?[0-9a-z]+/gi, ' ');
  e = e.replace(/#.*$/gm, ' ');
  const names = new Set<string>();
  for (const m of e.matchAll(/(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    if (/^\s*\(/.test(e.slice(m.index + word.length))) continue; // a function or an aggregation
    if (promqlKeywords.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/** Metric families of a /metrics text (its # TYPE lines), with the series names each one yields. */
function exportedNames(text: string): { families: Map<string, string>; names: Set<string> } {
  const families = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1]!, m[2]!);
  const names = new Set<string>();
  for (const [name, type] of families) {
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return { families, names };
}

// ---------------------------------------------------------------------------------------
// The files

interface AlertRule { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const alertsYaml = () => parse(readFileSync(join(promDir, 'alerts.yml'), 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
const alertRules = (): AlertRule[] => alertsYaml().groups.flatMap((g) => g.rules);
const dashboard = (): any => JSON.parse(readFileSync(dashboardFile, 'utf8'));

/** Every panel of the dashboard, those inside collapsed rows included. */
function allPanels(d: any): any[] {
  return (d.panels as any[]).flatMap((p) => [p, ...((p.panels as any[] | undefined) ?? [])]);
}

/** Every PromQL expression of the dashboard's panels, with where it is. */
function dashboardExprs(d: any): { where: string; expr: string }[] {
  return allPanels(d).flatMap((p) => ((p.targets as any[] | undefined) ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: String(t.expr) })));
}

/** Metric names of the dashboard's template variables (label_values(metric, label) and query_result(expr)). */
function variableMetricNames(d: any): { where: string; name: string }[] {
  const out: { where: string; name: string }[] = [];
  for (const v of d.templating.list as any[]) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : String(v.query.query);
    const lv = /^\s*label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(q);
    if (lv !== null) out.push({ where: `variable ${v.name}`, name: lv[1]! });
    const qr = /^\s*query_result\((.*)\)\s*$/.exec(q);
    if (qr !== null) for (const name of metricNamesOf(qr[1]!)) out.push({ where: `variable ${v.name}`, name });
  }
  return out;
}

/** Prometheus writes these for every target; the engine does not export them. */
const prometheusOwn = new Set(['up']);

// ---------------------------------------------------------------------------------------

describe('promtool: rules, their unit tests, the example configs', () => {
  it('promtool is installed (this suite fails without it, never skips)', () => {
    const out = expectPromtoolOk('--version');
    expect(out).toMatch(/promtool/);
  });

  it('alerts.yml passes promtool check rules', () => {
    const out = expectPromtoolOk('check', 'rules', join(promDir, 'alerts.yml'));
    expect(out).toMatch(new RegExp(`SUCCESS: ${alertRules().length} rules found`));
  });

  it('the unit tests of alerts.test.yml pass (sold out, overload, ERP age, ... fire; nothing fires on a healthy series)', () => {
    const out = expectPromtoolOk('test', 'rules', join(promDir, 'alerts.test.yml'));
    expect(out).toMatch(/SUCCESS/);
  });

  it('prometheus.yml (compose, systemd) passes promtool check config, rule files included', () => {
    const out = expectPromtoolOk('check', 'config', join(promDir, 'prometheus.yml'));
    expect(out).toMatch(/alerts\.yml/);
  });

  it('prometheus-kubernetes.yml passes promtool check config', () => {
    const file = join(promDir, 'prometheus-kubernetes.yml');
    const r = promtool('check', 'config', file);
    if (r.status === 0) return;
    // Debian's promtool is built without Kubernetes service discovery and refuses the field
    // itself. Check everything else: the same file with static targets in its place.
    expect(r.out, r.out).toMatch(/field kubernetes_sd_configs not found/);
    const dir = mkdtempSync(join(tmpdir(), 'flash-prom-'));
    try {
      const config = parse(readFileSync(file, 'utf8'));
      for (const job of config.scrape_configs) {
        expect(job.kubernetes_sd_configs?.[0]?.role).toBe('pod');
        delete job.kubernetes_sd_configs;
        job.static_configs = [{ targets: ['flash-shards-0.flash-shards.flash:8080'] }];
      }
      writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
      copyFileSync(join(promDir, 'alerts.yml'), join(dir, 'alerts.yml'));
      expectPromtoolOk('check', 'config', join(dir, 'prometheus.yml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('alerts.yml', () => {
  const wanted = [
    'FlashSkuSoldOut', 'FlashErpBacklogOld', 'FlashShardNodeDown', 'FlashShardUnavailable', 'FlashOverloaded',
    'FlashWalCommitSlow', 'FlashSnapshotFailing', 'FlashShardWorkerRestarted',
  ];

  it('has the alerts operators expect, each with for:, a severity and a summary and description', () => {
    const rules = alertRules();
    const names = rules.map((r) => r.alert);
    for (const name of wanted) expect(names, name).toContain(name);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(r.alert, `a recording rule in alerts.yml: ${r.record}`).toBeTypeOf('string');
      expect(r.for, `${r.alert}: for`).toMatch(/^\d+[smh]$/);
      expect(['info', 'warning', 'critical'], `${r.alert}: severity`).toContain(r.labels?.severity);
      expect(r.annotations?.summary, `${r.alert}: summary`).toBeTruthy();
      expect(r.annotations?.description, `${r.alert}: description`).toBeTruthy();
    }
  });

  it('the unit tests cover every alert: each one fires in some test, and the healthy test lists them all as silent', () => {
    const tests = parse(readFileSync(join(promDir, 'alerts.test.yml'), 'utf8')).tests as any[];
    const names = alertRules().map((r) => r.alert!);
    const fired = new Set(tests.flatMap((t) => (t.alert_rule_test as any[]).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    const silentSets = tests.map((t) => new Set((t.alert_rule_test as any[]).filter((a) => a.exp_alerts.length === 0).map((a) => a.alertname)));
    const healthy = silentSets.find((s) => names.every((n) => s.has(n)));
    expect(healthy, 'a test in which every alert of alerts.yml is expected silent').toBeDefined();
    const notFired = names.filter((n) => !fired.has(n));
    expect(notFired, 'alerts no unit test makes fire').toEqual([]);
  });
});

describe('deploy/grafana/flash-sale.json', () => {
  it('is a Grafana dashboard with a Prometheus datasource variable used by every panel', () => {
    const d = dashboard();
    expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(d.uid).toMatch(/^[\w-]{1,40}$/);
    const dsVar = (d.templating.list as any[]).find((v) => v.type === 'datasource');
    expect(dsVar?.query).toBe('prometheus');
    const ref = `\${${dsVar.name}}`;
    const panels = allPanels(d);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size, 'panel ids are unique').toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos, `panel "${p.title}" gridPos`).toBeDefined();
      expect(p.gridPos.x + p.gridPos.w, `panel "${p.title}" fits in 24 columns`).toBeLessThanOrEqual(24);
      if (p.type === 'row') continue;
      expect(p.datasource?.uid, `panel "${p.title}" datasource`).toBe(ref);
      expect(p.targets?.length, `panel "${p.title}" has queries`).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.datasource?.uid, `panel "${p.title}" ${t.refId}`).toBe(ref);
    }
    for (const v of d.templating.list as any[]) if (v.type === 'query') expect(v.datasource?.uid, `variable ${v.name}`).toBe(ref);
  });

  it('no two panels overlap', () => {
    const cells = new Map<string, string>();
    for (const p of allPanels(dashboard())) {
      const { x, y, w, h } = p.gridPos;
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const key = `${i},${j}`;
          expect(cells.get(key), `"${p.title}" overlaps "${cells.get(key)}"`).toBeUndefined();
          cells.set(key, p.title);
        }
      }
    }
  });

  it('shows what operators look at', () => {
    const used = new Set(dashboardExprs(dashboard()).flatMap((e) => metricNamesOf(e.expr)));
    for (const name of [
      'flash_http_requests_total', 'flash_refusals_total', 'flash_reserve_duration_seconds_bucket',
      'flash_sku_available', 'flash_sku_reserved', 'flash_sku_sold', 'flash_sku_on_hand', 'flash_queue_entries',
      'flash_erp_backlog_events', 'flash_erp_oldest_undelivered_seconds', 'flash_wal_commit_duration_seconds_bucket',
      'flash_shard_mailbox_depth', 'flash_shard_live_reservations', 'flash_shard_restarts_total',
      'flash_shard_snapshot_failures', 'flash_build_info',
    ]) expect([...used], name).toContain(name);
    const exprs = dashboardExprs(dashboard()).map((e) => e.expr);
    expect(exprs.some((e) => /histogram_quantile\(0\.99,.*flash_reserve_duration_seconds_bucket/.test(e))).toBe(true);
    expect(exprs.some((e) => /histogram_quantile\(0\.5,.*flash_reserve_duration_seconds_bucket/.test(e))).toBe(true);
    expect(exprs.some((e) => /histogram_quantile\(0\.99,.*flash_wal_commit_duration_seconds_bucket/.test(e))).toBe(true);
  });

  it('every panel query is valid PromQL (promtool, with the Grafana variables filled in)', () => {
    const d = dashboard();
    const fill = (e: string) => e.replace(/\$__rate_interval|\$__interval|\$\{__rate_interval\}/g, '1m').replace(/\$\{?(sku|drop)\}?/g, '.*');
    const rules = { groups: [{ name: 'dashboard', rules: dashboardExprs(d).map((e, i) => ({ record: `flash_dashboard:query_${i}`, expr: fill(e.expr) })) }] };
    const dir = mkdtempSync(join(tmpdir(), 'flash-dash-'));
    try {
      writeFileSync(join(dir, 'dashboard-rules.yml'), stringify(rules));
      expectPromtoolOk('check', 'rules', join(dir, 'dashboard-rules.yml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('every metric the dashboard and the alerts use is one a running engine exports', () => {
  let engine: Engine;
  let exported: ReturnType<typeof exportedNames>;
  let metricsText: string;

  beforeAll(async () => {
    // An ERP on a port nobody listens on: the hand-off's metrics exist (and count failures).
    engine = await startEngine({
      env: { FLASH_ERP_WEBHOOK_URL: `http://127.0.0.1:${await freePort()}/erp`, FLASH_ERP_SECRET: 'deploy-monitoring-test-secret' },
    });
    const a = api(engine.url);
    expect((await a.put('/v1/skus/mon-tee', { stock: 1 })).status).toBe(201);
    expect((await a.post('/v1/reservations', { sku: 'mon-tee', buyerId: 'mon-ann' }, TOKENS.shop)).status).toBe(201);
    // Sold out now: a refusal, and a sold_out stock event.
    expect((await a.post('/v1/reservations', { sku: 'mon-tee', buyerId: 'mon-bob' }, TOKENS.shop)).status).toBe(409);
    const res = await fetch(`${engine.url}/metrics`);
    expect(res.status).toBe(200);
    metricsText = await res.text();
    exported = exportedNames(metricsText);
  });

  afterAll(async () => {
    await stopAllEngines();
  });

  it('the engine exports the series the reserve made, and flash_build_info', () => {
    for (const series of [
      'flash_http_requests_total{route="reservation.create",status="201"}',
      'flash_reserve_duration_seconds_count',
      'flash_sku_available{sku="mon-tee"} 0',
      'flash_sku_on_hand{sku="mon-tee"} 1',
      'flash_stock_events_total{type="sold_out",sku="mon-tee"} 1',
      'flash_erp_oldest_undelivered_seconds',
    ]) expect(metricsText).toContain(series);
    expect(metricsText).toMatch(/^flash_refusals_total\{route="POST \/v1\/reservations",code="sold_out"\} 1$/m);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const info = /^flash_build_info\{([^}]*)\} (\S+)$/m.exec(metricsText);
    expect(info, 'flash_build_info in /metrics').not.toBeNull();
    const labels = Object.fromEntries([...info![1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    expect(labels).toEqual({ version: pkg.version, node: process.version, role: 'all' });
    expect(info![2]).toBe('1');
    expect(exported.families.get('flash_build_info')).toBe('gauge');
  });

  it('dashboard: every metric of every panel and variable', () => {
    const d = dashboard();
    const uses = [
      ...dashboardExprs(d).flatMap((e) => metricNamesOf(e.expr).map((name) => ({ where: e.where, name }))),
      ...variableMetricNames(d),
    ];
    expect(uses.length).toBeGreaterThan(20);
    const unknown = uses.filter((u) => !exported.names.has(u.name)).map((u) => `${u.where}: ${u.name}`);
    expect(unknown, 'metric names the engine does not export').toEqual([]);
  });

  it('alerts: every metric of every rule, and of every input series of the unit tests', () => {
    const uses = alertRules().flatMap((r) => metricNamesOf(r.expr).map((name) => ({ where: `alert ${r.alert}`, name })));
    expect(uses.length).toBeGreaterThan(10);
    const tests = parse(readFileSync(join(promDir, 'alerts.test.yml'), 'utf8')).tests as any[];
    for (const t of tests) for (const s of t.input_series) uses.push({ where: `alerts.test.yml series ${s.series}`, name: /^[\w:]+/.exec(s.series)![0] });
    const unknown = uses.filter((u) => !exported.names.has(u.name) && !prometheusOwn.has(u.name)).map((u) => `${u.where}: ${u.name}`);
    expect(unknown, 'metric names the engine does not export').toEqual([]);
  });

  it('the metric-name reader finds names and nothing else', () => {
    expect(metricNamesOf('histogram_quantile(0.99, sum by (le, shard) (rate(flash_wal_commit_duration_seconds_bucket{shard=~"$shard"}[$__rate_interval]))) > 0.05'))
      .toEqual(['flash_wal_commit_duration_seconds_bucket']);
    expect(metricNamesOf('increase(a_total[15m]) > 0 or (a_total unless a_total offset 15m) and on (sku) max by (sku) (b) == 0 unless ignoring(x) c'))
      .toEqual(['a_total', 'b', 'c']);
    expect(metricNamesOf('sum(rate(x{status="503", route!~"healthz|metrics"}[2m])) / sum(rate(y[2m])) > 1e3')).toEqual(['x', 'y']);
  });
});

describe('deploy/ YAML and the settings that go with monitoring', () => {
  function yamlFiles(dir: string): string[] {
    return readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return yamlFiles(path);
      return /\.ya?ml$/.test(name) ? [path] : [];
    });
  }

  it('every YAML file under deploy/ parses', () => {
    const files = yamlFiles(deploy);
    expect(files.length).toBeGreaterThan(8);
    for (const file of files) {
      for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
        expect(doc.errors.map((e) => e.message), file).toEqual([]);
      }
    }
  });

  const k8sDocs = (file: string): any[] => parseAllDocuments(readFileSync(join(deploy, 'k8s', file), 'utf8')).map((d) => d.toJSON()).filter((d) => d !== null);
  const monitoringPeer = (rule: any): boolean => (rule.from ?? []).some((peer: any) =>
    peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'monitoring'
    && peer.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'prometheus');

  it('k8s: a Prometheus in the namespace `monitoring` may scrape the shard nodes and the gateways on their metrics port', () => {
    const policies = k8sDocs('networkpolicy.yaml').filter((d) => d.kind === 'NetworkPolicy');
    const port = (app: string): number => {
      const file = app === 'flash-shards' ? 'shards.yaml' : 'gateway.yaml';
      const workload = k8sDocs(file).find((d) => d.kind === 'StatefulSet' || d.kind === 'Deployment');
      const tpl = workload.spec.template;
      expect(tpl.metadata.annotations['prometheus.io/scrape']).toBe('true');
      return Number(tpl.metadata.annotations['prometheus.io/port']);
    };
    for (const app of ['flash-shards', 'flash-gateway']) {
      const mine = policies.filter((p) => p.spec.podSelector.matchLabels?.['app.kubernetes.io/name'] === app);
      expect(mine.length, `a NetworkPolicy for ${app}`).toBeGreaterThan(0);
      const rules = mine.flatMap((p) => p.spec.ingress as any[]);
      const scrape = rules.find((r) => monitoringPeer(r) && (r.ports as any[]).some((p) => p.port === port(app)));
      expect(scrape, `${app}: an ingress rule from the monitoring namespace's Prometheus on port ${port(app)}`).toBeDefined();
    }
  });

  const erpSettings = [...new Set([...readFileSync(join(root, 'src', 'erp', 'erp-config.ts'), 'utf8').matchAll(/\b(FLASH_ERP_[A-Z_]+)\b/g)].map((m) => m[1]!))];

  it('k8s: every FLASH_ERP_* setting reaches the shard pods (ConfigMap, Secret flash-erp for the secrets), and no other', () => {
    expect(erpSettings).toEqual(expect.arrayContaining(['FLASH_ERP_WEBHOOK_URL', 'FLASH_ERP_SECRET', 'FLASH_ERP_PG_URL', 'FLASH_ERP_MAX_RPS']));
    const config = k8sDocs('configmap.yaml').find((d) => d.metadata.name === 'flash-config').data as Record<string, string>;
    const secret = k8sDocs('secret.yaml').find((d) => d.metadata.name === 'flash-erp');
    expect(secret, 'Secret flash-erp in secret.yaml').toBeDefined();
    const inSecret = Object.keys(secret.stringData);
    expect(inSecret).toContain('FLASH_ERP_SECRET');
    expect(Object.keys(config)).not.toContain('FLASH_ERP_SECRET');
    const given = [...Object.keys(config).filter((k) => k.startsWith('FLASH_ERP_')), ...inSecret];
    expect(given.sort()).toEqual([...erpSettings].sort());
    const shards = k8sDocs('shards.yaml').find((d) => d.kind === 'StatefulSet');
    const engine = (shards.spec.template.spec.containers as any[]).find((c) => c.name === 'engine');
    expect(engine.envFrom).toContainEqual({ secretRef: { name: 'flash-erp', optional: true } });
    expect(engine.envFrom).toContainEqual({ configMapRef: { name: 'flash-config' } });
  });

  it('compose: every shard node (standbys too) gets every FLASH_ERP_* setting, the gateways none', () => {
    const compose = parse(readFileSync(join(deploy, 'compose', 'compose.yaml'), 'utf8'), { merge: true });
    const services = compose.services as Record<string, any>;
    const shardNodes = Object.keys(services).filter((s) => services[s].environment?.FLASH_ROLE === 'shards');
    expect(shardNodes.sort()).toEqual(['shards-a', 'shards-a-standby', 'shards-b', 'shards-b-standby']);
    for (const s of shardNodes) {
      const env = Object.keys(services[s].environment).filter((k) => k.startsWith('FLASH_ERP_'));
      expect(env.sort(), s).toEqual([...erpSettings].sort());
    }
    for (const s of Object.keys(services).filter((n) => services[n].environment?.FLASH_ROLE === 'gateway')) {
      expect(Object.keys(services[s].environment).filter((k) => k.startsWith('FLASH_ERP_')), s).toEqual([]);
    }
    const example = readFileSync(join(deploy, 'compose', '.env.example'), 'utf8');
    for (const k of erpSettings) expect(example, `.env.example: ${k}`).toMatch(new RegExp(`^${k}=`, 'm'));
  });
});
