// The newcomer's path into a closed-by-default engine: when an embedded engine starts with
// no credential configured (and not in FLASH_DEV), it generates one token per role and a
// buyer-token secret into <data dir>/credentials/ (files 0600, directory 0700) on first
// start, reuses them on later starts, and says where they are, as Jupyter and Grafana do.
// The caller holds the data directory's lock. Never used once an operator configures
// FLASH_ADMIN_TOKEN, FLASH_TOKENS_FILE or buyer-token keys, nor across machines (NATS).

import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../config.js';
import { parseTokensFile } from './callers.js';
import { Roles } from './routes.js';

export interface GeneratedCredentials {
  dir: string;
  /** A FLASH_TOKENS_FILE-format file with one token per role. */
  tokensFile: string;
  /** The same tokens as shell variables (ADMIN_TOKEN=..., BUYER_TOKEN_SECRET=...). */
  envFile: string;
  buyerTokenSecret: string;
  /** True when this start wrote them (the first start of this data directory). */
  created: boolean;
}

/**
 * Writes `text` durably and readable by the owner only: a temp file of this process's own
 * (created exclusively, so never a file or link someone left there), fsync, rename.
 */
function writePrivate(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    fchmodSync(fd, 0o600); // the umask may have narrowed the mode; never widened it
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** The set a first start wrote, checked whole: a damaged set is refused, never silently replaced. */
function readGenerated(dir: string, tokensFile: string, envFile: string, secretFile: string): string {
  const missing = [tokensFile, envFile, secretFile].filter((f) => !existsSync(f));
  const fix = `restore it, or remove ${dir} to generate new tokens (those handed out stop working)`;
  if (missing.length > 0) throw new ConfigError(`the generated credentials in ${dir} are incomplete (${missing.join(', ')} missing): ${fix}`);
  parseTokensFile(readFileSync(tokensFile, 'utf8'), tokensFile);
  const secret = readFileSync(secretFile, 'utf8').trim();
  if (Buffer.byteLength(secret) < 32) throw new ConfigError(`the buyer-token secret in ${secretFile} is shorter than 32 bytes: ${fix}`);
  // Only the owner may read them, whatever an earlier hand did to the modes.
  chmodSync(dir, 0o700);
  for (const f of [tokensFile, envFile, secretFile]) chmodSync(f, 0o600);
  return secret;
}

const newToken = (role: string): string => `flash_${role}_${randomBytes(24).toString('base64url')}`;

export function firstRunCredentials(dataDir: string): GeneratedCredentials {
  const dir = join(dataDir, 'credentials');
  const tokensFile = join(dir, 'tokens.json');
  const envFile = join(dir, 'tokens.env');
  const secretFile = join(dir, 'buyer-token-secret');
  // The tokens file is written last: with it present, the set is complete (or damaged).
  if (existsSync(tokensFile)) {
    return { dir, tokensFile, envFile, buyerTokenSecret: readGenerated(dir, tokensFile, envFile, secretFile), created: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tokens = Roles.map((role) => ({ name: `${role}-generated`, role, token: newToken(role) }));
  const buyerTokenSecret = randomBytes(32).toString('base64url');
  const env = [
    '# Generated on first start because no credential was configured. Load with: . data/credentials/tokens.env',
    ...tokens.map((t) => `${t.role.toUpperCase()}_TOKEN=${t.token}`),
    `BUYER_TOKEN_SECRET=${buyerTokenSecret}`,
    '',
  ].join('\n');
  writePrivate(envFile, env);
  writePrivate(secretFile, `${buyerTokenSecret}\n`);
  // The tokens file last: its presence marks the set as complete.
  writePrivate(tokensFile, `${JSON.stringify(tokens, null, 2)}\n`);
  const dirFd = openSync(dir, 'r');
  fsyncSync(dirFd);
  closeSync(dirFd);
  return { dir, tokensFile, envFile, buyerTokenSecret, created: true };
}
