// `GET /console` and `GET /console/{file}`: the live console's page, plain files with no
// build step (page/console.html, console.js, console.css next to this module's source) and
// uPlot's own files from node_modules/uplot/dist. Only the files of a fixed allow-list are
// served; the page holds no data (it asks for a token and reads /v1/console/stream), so
// both routes are public.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FeatureHandler } from '../gateway/http-gateway.js';
import { sendError } from '../gateway/request-io.js';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Where the page's files are: beside this module when it runs from src/ (tests), and in the
 * source tree when it runs compiled from dist/src/console (tsc copies no .html, .js or .css).
 */
function pageDir(): string | null {
  for (const dir of [join(here, 'page'), join(here, '..', '..', '..', 'src', 'console', 'page')]) {
    if (existsSync(join(dir, 'console.html'))) return dir;
  }
  return null;
}

function uplotDir(): string | null {
  try {
    return dirname(fileURLToPath(import.meta.resolve('uplot')));
  } catch {
    return null;
  }
}

const types = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' } as const;

/** The files `GET /console/{file}` serves, and where each is read from. */
const assets: Record<string, { dir: () => string | null; type: keyof typeof types }> = {
  'console.js': { dir: pageDir, type: 'js' },
  'console.css': { dir: pageDir, type: 'css' },
  'uPlot.iife.min.js': { dir: uplotDir, type: 'js' },
  'uPlot.min.css': { dir: uplotDir, type: 'css' },
};

/**
 * The page may load only its own files and talk only to this origin; it is never framed.
 * (uPlot sizes its elements through element.style, which a CSP without inline styles allows.)
 */
const pageHeaders = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

interface Loaded {
  body: Buffer;
  etag: string;
}

/** Files are read once, on first use; `null`: the file is missing from this installation. */
const cache = new Map<string, Loaded | null>();

function load(name: string, dir: string | null): Loaded | null {
  if (cache.has(name)) return cache.get(name)!;
  let loaded: Loaded | null = null;
  if (dir !== null) {
    try {
      const body = readFileSync(join(dir, name));
      loaded = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
    } catch {
      loaded = null;
    }
  }
  cache.set(name, loaded);
  return loaded;
}

function serve(res: ServerResponse, ifNoneMatch: string | undefined, file: Loaded, type: keyof typeof types, extra: Record<string, string> = {}): number {
  // Revalidated on every load (no-cache), answered 304 while unchanged: an upgrade shows at once.
  const headers = { 'cache-control': 'no-cache', etag: file.etag, 'x-content-type-options': 'nosniff', ...extra };
  if (ifNoneMatch === file.etag) {
    res.writeHead(304, headers);
    res.end();
    return 304;
  }
  res.writeHead(200, { ...headers, 'content-type': types[type], 'content-length': file.body.length });
  res.end(file.body);
  return 200;
}

/** `GET /console`: the page. */
export const consolePage: FeatureHandler = async ({ req, res }) => {
  const page = load('console.html', pageDir());
  if (page === null) return sendError(res, 'not_found', 'the console page is not installed with this engine (src/console/page is missing)');
  return serve(res, req.headers['if-none-match'], page, 'html', pageHeaders);
};

/** `GET /console/{file}`: one file of the allow-list, else 404. */
export const consoleAsset: FeatureHandler = async ({ req, res }) => {
  const path = (req.url ?? '').split('?')[0] ?? '';
  const name = path.slice(path.lastIndexOf('/') + 1);
  const asset = Object.prototype.hasOwnProperty.call(assets, name) ? assets[name] : undefined;
  if (asset === undefined) return sendError(res, 'not_found', `the console has no file ${JSON.stringify(name.slice(0, 64))}`);
  const file = load(name, asset.dir());
  if (file === null) return sendError(res, 'not_found', `the console file ${name} is not installed with this engine`);
  return serve(res, req.headers['if-none-match'], file, asset.type);
};
