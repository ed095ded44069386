// The live console's script: plain browser JavaScript, no build step. It asks for a token,
// reads GET /v1/console/stream with fetch() (EventSource cannot send an Authorization
// header), and draws each `tick` (stock per SKU, reserve rate, latency, refusals, queues,
// ERP backlog) and each `stock` event. The stream starts with `history` (what the engine saw
// in the last minutes, a sample every few seconds); the page then adds every tick, keeping
// the last HISTORY_POINTS points per series.
'use strict';

(() => {
  const TOKEN_KEY = 'flash-console-token';
  /** Points kept per series: about 30 minutes at one tick a second. */
  const HISTORY_POINTS = 1800;
  /** SKUs whose sell-through history is kept (the first seen); the table shows every SKU. */
  const HISTORY_SKUS = 100;
  /** Sell-through charts drawn at once, and table rows shown at once. */
  const CHARTS_MAX = 12;
  const ROWS_MAX = 200;
  const EVENTS_MAX = 50;
  const REFUSAL_WINDOW_MS = 60_000;
  /** Points further apart than this (s) are not joined: the engine saw nothing in between. */
  const GAP_SECONDS = 30;
  const ALL = '*';
  const NO_DROP = '-';

  const $ = (id) => document.getElementById(id);

  /** The drop picked last, kept in the address (#drop=...) so a view can be shared. */
  function dropFromHash() {
    const m = /^#drop=(.+)$/.exec(location.hash);
    try {
      return m ? decodeURIComponent(m[1]) : ALL;
    } catch {
      return ALL;
    }
  }

  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const fmt = (v) => (v === null || v === undefined ? '–' : number.format(v));
  const fmt1 = (v) => (v === null || v === undefined ? '–' : decimal.format(v));

  /** Everything the page has seen since it opened. */
  const state = {
    /** Columns for uPlot: time (s), reserve calls/s, holds/s, p50 ms, p99 ms. */
    totals: [[], [], [], [], []],
    /** sku -> columns: time (s), available, reserved, sold. */
    skus: new Map(),
    /** Cumulative refusals by code, with when: the last minute's are the difference. */
    refusals: [],
    latest: null,
    /** sku -> its latest figures: a tick lists every SKU when `full`, else only what changed. */
    current: new Map(),
    drop: dropFromHash(),
  };

  // ---- connection -----------------------------------------------------------------------

  let controller = null;
  let retryTimer = null;

  function setStatus(text, kind) {
    const el = $('status');
    el.textContent = text;
    el.dataset.state = kind;
  }

  function showLogin(message) {
    $('board').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setStatus('not connected', 'idle');
    $('token').focus();
  }

  function showBoard() {
    $('login').hidden = true;
    $('board').hidden = false;
    $('sign-out').hidden = false;
  }

  function notice(text) {
    $('notice').hidden = !text;
    $('notice').textContent = text || '';
  }

  function reconnect(seconds, why) {
    clearTimeout(retryTimer);
    setStatus(`reconnecting in ${seconds} s`, 'connecting');
    if (why) notice(why);
    retryTimer = setTimeout(connect, seconds * 1000);
  }

  async function errorMessage(res) {
    try {
      const body = await res.json();
      return body.error.message;
    } catch {
      return `HTTP ${res.status}`;
    }
  }

  async function connect() {
    clearTimeout(retryTimer);
    // '' is a choice too: no token, for an engine started with FLASH_DEV=1.
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token === null) return showLogin();
    showBoard();
    setStatus('connecting', 'connecting');
    controller?.abort();
    const mine = (controller = new AbortController());
    let res;
    try {
      res = await fetch('v1/console/stream', {
        headers: token === '' ? { accept: 'text/event-stream' } : { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
        cache: 'no-store',
        signal: mine.signal,
      });
    } catch {
      if (!mine.signal.aborted) reconnect(3, 'The engine cannot be reached.');
      return;
    }
    if (res.status === 401 || res.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin(await errorMessage(res));
    }
    if (!res.ok) {
      const wait = Number(res.headers.get('retry-after')) || 5;
      return reconnect(wait, await errorMessage(res));
    }
    setStatus('live', 'live');
    notice('');
    try {
      await readEvents(res.body, mine.signal);
    } catch {
      // The stream broke (the engine restarted, or dropped this page for falling behind).
    }
    if (!mine.signal.aborted) reconnect(2, 'The stream ended; reconnecting.');
  }

  /** Reads `event:` / `data:` blocks separated by a blank line, and dispatches each. */
  async function readEvents(body, signal) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    signal.addEventListener('abort', () => reader.cancel().catch(() => {}));
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (data === '') continue;
        if (name === 'tick') onTick(JSON.parse(data));
        else if (name === 'stock') onStock(JSON.parse(data));
        else if (name === 'history') onHistory(JSON.parse(data));
      }
    }
  }

  // ---- figures ----------------------------------------------------------------------------

  function push(columns, values) {
    const last = columns[0].at(-1);
    if (last !== undefined && values[0] <= last) return; // already drawn (a reconnect)
    // A null point breaks the line across a stretch the engine did not watch.
    if (last !== undefined && values[0] - last > GAP_SECONDS) columns.forEach((c, i) => c.push(i === 0 ? last + 1 : null));
    values.forEach((v, i) => columns[i].push(v));
    while (columns[0].length > HISTORY_POINTS) for (const c of columns) c.shift();
  }

  function skuColumns(sku) {
    let columns = state.skus.get(sku);
    if (columns === undefined && state.skus.size < HISTORY_SKUS) state.skus.set(sku, (columns = [[], [], [], []]));
    return columns;
  }

  /** What the engine saw before this page connected: samples of past ticks, and recent stock events. */
  function onHistory(history) {
    for (const s of history.samples) {
      const t = s.at / 1000;
      push(state.totals, [t, s.perSecond, s.okPerSecond, s.p50Ms, s.p99Ms]);
      for (const [sku, available, reserved, sold] of s.skus) {
        const columns = skuColumns(sku);
        if (columns) push(columns, [t, available, reserved, sold]);
      }
    }
    if ($('events').children.length === 0) for (const e of history.events) onStock(e);
  }

  function onTick(sent) {
    if (sent.full) state.current.clear();
    for (const s of sent.skus) state.current.set(s.sku, s);
    for (const sku of sent.removed) state.current.delete(sku);
    const skus = [...state.current.values()].sort((x, y) => (x.sku < y.sku ? -1 : x.sku > y.sku ? 1 : 0));
    const tick = { ...sent, skus };
    state.latest = tick;
    const t = tick.at / 1000;
    const r = tick.reserve;
    push(state.totals, [t, r.perSecond, r.okPerSecond, r.p50Ms, r.p99Ms]);
    for (const s of tick.skus) {
      const columns = skuColumns(s.sku);
      if (columns) push(columns, [t, s.available, s.reserved, s.sold]);
    }
    state.refusals.push({ at: tick.at, counts: tick.refusals });
    while (state.refusals.length > 1 && state.refusals[1].at <= tick.at - REFUSAL_WINDOW_MS) state.refusals.shift();
    render(tick);
  }

  function onStock(e) {
    const li = document.createElement('li');
    const time = document.createElement('time');
    time.dateTime = new Date(e.at).toISOString();
    time.textContent = new Date(e.at).toLocaleTimeString();
    const type = document.createElement('span');
    type.className = `type ${e.type}`;
    type.textContent = e.type.replace('_', ' ');
    const sku = document.createElement('span');
    sku.textContent = e.sku;
    li.append(time, type, sku);
    const list = $('events');
    list.prepend(li);
    while (list.children.length > EVENTS_MAX) list.lastChild.remove();
    $('no-events').hidden = true;
  }

  // ---- drawing ----------------------------------------------------------------------------

  function render(tick) {
    $('updated').textContent = `updated ${new Date(tick.at).toLocaleTimeString()} · ${tick.shards.answered}/${tick.shards.of} shards`;
    const missing = tick.shards.of - tick.shards.answered;
    notice(missing > 0 ? `${missing} shard(s) did not answer: their SKUs are missing from this tick.` : '');
    const r = tick.reserve;
    $('rate').textContent = fmt1(r.perSecond);
    $('ok-rate').textContent = fmt1(r.okPerSecond);
    $('p50').textContent = fmt1(r.p50Ms);
    $('p99').textContent = fmt1(r.p99Ms);
    $('window').textContent = String(r.windowSeconds || 10);
    const erp = tick.erp;
    $('erp-backlog').textContent = fmt(erp.backlogOrders);
    $('erp-units').textContent = fmt(erp.undeliveredUnits);
    const age = erp.oldestUndeliveredAgeSeconds;
    $('erp-oldest').textContent = age === null ? 'none' : duration(age);
    $('erp-oldest').classList.toggle('warn', age !== null && age >= 60);
    renderDrops(tick);
    renderSkus(tick);
    renderQueues(tick);
    renderRefusals(tick);
    updateTotalsCharts();
  }

  function duration(seconds) {
    if (seconds < 60) return `${seconds} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  }

  function cell(row, value, field, numeric = true) {
    const td = document.createElement('td');
    td.textContent = numeric ? fmt(value) : value;
    if (numeric) td.className = 'num';
    if (field) {
      td.dataset.field = field;
      td.dataset.value = String(value);
    }
    row.append(td);
  }

  function renderDrops(tick) {
    const drops = new Set(tick.queues.map((q) => q.dropId));
    let undropped = false;
    for (const s of tick.skus) {
      if (s.dropId === null) undropped = true;
      else drops.add(s.dropId);
    }
    const options = [[ALL, 'All SKUs'], ...[...drops].sort().map((d) => [d, d])];
    if (undropped) options.push([NO_DROP, 'No drop']);
    const select = $('drop');
    const key = options.map((o) => o[0]).join('\n');
    if (select.dataset.key === key) return;
    select.dataset.key = key;
    select.replaceChildren(...options.map(([value, label]) => new Option(label, value, false, value === state.drop)));
    if (!options.some((o) => o[0] === state.drop)) select.value = state.drop = ALL;
  }

  function selectedSkus(tick) {
    const drop = state.drop;
    if (drop === ALL) return tick.skus;
    return tick.skus.filter((s) => (drop === NO_DROP ? s.dropId === null : s.dropId === drop));
  }

  function renderSkus(tick) {
    const skus = selectedSkus(tick);
    const rows = skus.slice(0, ROWS_MAX).map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.sku = s.sku;
      if (s.available === 0 && s.onHand > 0) tr.className = 'sold-out';
      cell(tr, s.sku, null, false);
      cell(tr, s.dropId ?? '—', null, false);
      cell(tr, s.onHand, 'onHand');
      cell(tr, s.available, 'available');
      cell(tr, s.reserved, 'reserved');
      cell(tr, s.sold, 'sold');
      const td = document.createElement('td');
      td.className = 'num';
      td.textContent = s.onHand > 0 ? `${Math.round((100 * s.sold) / s.onHand)} %` : '–';
      tr.append(td);
      return tr;
    });
    $('skus').tBodies[0].replaceChildren(...rows);
    const notes = [];
    if (skus.length > ROWS_MAX) notes.push(`showing ${ROWS_MAX} of ${skus.length} SKUs`);
    if (skus.length > CHARTS_MAX) notes.push(`curves for the first ${CHARTS_MAX}: pick a drop to narrow`);
    if (tick.skusTruncated) notes.push('the engine sent the first SKUs only');
    $('sku-note').textContent = notes.join(' · ');
    renderSkuCharts(skus.slice(0, CHARTS_MAX).map((s) => s.sku));
  }

  function renderQueues(tick) {
    $('queues-section').hidden = tick.queues.length === 0;
    const rows = tick.queues.map((q) => {
      const tr = document.createElement('tr');
      tr.dataset.drop = q.dropId;
      cell(tr, q.dropId, null, false);
      cell(tr, q.mode, null, false);
      for (const k of ['entries', 'waiting', 'admitted', 'used', 'lapsed', 'won', 'lost']) cell(tr, q[k], k);
      return tr;
    });
    $('queues').tBodies[0].replaceChildren(...rows);
  }

  function renderRefusals(tick) {
    const base = state.refusals[0].counts;
    const codes = Object.keys(tick.refusals).sort((a, b) => tick.refusals[b] - tick.refusals[a]);
    const rows = codes.map((code) => {
      const tr = document.createElement('tr');
      tr.dataset.code = code;
      cell(tr, code, null, false);
      cell(tr, tick.refusals[code] - (base[code] ?? 0), 'recent');
      cell(tr, tick.refusals[code], 'total');
      return tr;
    });
    $('refusals').tBodies[0].replaceChildren(...rows);
    $('no-refusals').hidden = codes.length > 0;
  }

  // ---- charts (uPlot) -----------------------------------------------------------------------

  const charts = { totals: [], skus: new Map() };

  function widthOf(el) {
    return Math.max(240, Math.floor(el.getBoundingClientRect().width));
  }

  function chart(target, series, data, height = 200) {
    return new uPlot({
      width: widthOf(target),
      height,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{}, ...series],
      axes: [{}, { size: 56 }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, data, target);
  }

  const line = (label, stroke, extra = {}) => ({ label, stroke, width: 2, spanGaps: false, points: { show: false }, ...extra });

  function updateTotalsCharts() {
    const [t, rate, ok, p50, p99] = state.totals;
    if (charts.totals.length === 0) {
      charts.totals.push(
        chart($('chart-rate'), [line('calls/s', '#1f6feb'), line('holds/s', '#1a7f37')], [t, rate, ok]),
        chart($('chart-latency'), [line('p50 ms', '#8250df'), line('p99 ms', '#c62828')], [t, p50, p99]),
      );
      return;
    }
    charts.totals[0].setData([t, rate, ok]);
    charts.totals[1].setData([t, p50, p99]);
  }

  function renderSkuCharts(skus) {
    const box = $('sku-charts');
    const wanted = new Set(skus.filter((s) => state.skus.has(s)));
    for (const [sku, c] of charts.skus) {
      if (!wanted.has(sku)) {
        c.plot.destroy();
        c.figure.remove();
        charts.skus.delete(sku);
      }
    }
    for (const sku of wanted) {
      const data = state.skus.get(sku);
      const existing = charts.skus.get(sku);
      if (existing) {
        existing.plot.setData(data);
        continue;
      }
      const figure = document.createElement('figure');
      figure.className = 'chart';
      figure.dataset.sku = sku;
      const caption = document.createElement('figcaption');
      caption.textContent = sku;
      const target = document.createElement('div');
      figure.append(caption, target);
      box.append(figure);
      const plot = chart(target, [
        line('available', '#1a7f37'),
        line('reserved', '#b35900'),
        line('sold', '#1f6feb', { fill: 'rgba(31, 111, 235, 0.08)' }),
      ], data, 170);
      charts.skus.set(sku, { plot, figure, target });
    }
  }

  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      const size = (plot, el, height) => plot.setSize({ width: widthOf(el), height });
      if (charts.totals.length === 2) {
        size(charts.totals[0], $('chart-rate'), 200);
        size(charts.totals[1], $('chart-latency'), 200);
      }
      for (const c of charts.skus.values()) size(c.plot, c.target, 170);
    }, 150);
  });

  // ---- controls ---------------------------------------------------------------------------

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    $('token').value = '';
    connect();
  });

  $('sign-out').addEventListener('click', () => {
    controller?.abort();
    clearTimeout(retryTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
  });

  $('drop').addEventListener('change', (e) => {
    state.drop = e.target.value;
    history.replaceState(null, '', state.drop === ALL ? location.pathname : `#drop=${encodeURIComponent(state.drop)}`);
    if (state.latest) renderSkus(state.latest);
  });

  connect();
})();
