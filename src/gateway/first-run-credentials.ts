// The newcomer's path into a closed-by-default engine: when an embedded engine starts with
// no credential configured (and not in FLASH_DEV), it generates one token per role and a
// buyer-token secret into <data dir>/credentials/ (mode 0600) on first start, reuses them on
// later starts, and says where they are, as Jupyter and Grafana do. Never used once an
// operator configures FLASH_ADMIN_TOKEN, FLASH_TOKENS_FILE or buyer-token keys.

import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
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

/** Writes `text` durably and readable by the owner only: temp file, fsync, rename. */
function writePrivate(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

const newToken = (role: string): string => `flash_${role}_${randomBytes(24).toString('base64url')}`;

export function firstRunCredentials(dataDir: string): GeneratedCredentials {
  const dir = join(dataDir, 'credentials');
  const tokensFile = join(dir, 'tokens.json');
  const envFile = join(dir, 'tokens.env');
  const secretFile = join(dir, 'buyer-token-secret');
  if (existsSync(tokensFile) && existsSync(secretFile)) {
    return { dir, tokensFile, envFile, buyerTokenSecret: readFileSync(secretFile, 'utf8').trim(), created: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
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
