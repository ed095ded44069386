// Gateways that share a port (FLASH_REUSE_PORT) must be gateways of one deployment: the kernel
// hands each new connection to any of them, so a gateway of another deployment (another NATS
// prefix, another shard count, other credentials, or development mode) on the same port would
// sell another deployment's stock, or let callers in on a share of connections. Each such
// gateway publishes a fingerprint of what makes a deployment in its /healthz (to callers on
// this machine only), and a gateway about to join a port that something already serves reads
// it first and refuses on a mismatch.

import { scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface DeploymentIdentity {
  natsPrefix: string;
  shardCount: number;
  natsUrl: string | null;
  devMode: boolean;
  adminToken: string | null;
  tokensFile: string | null;
  /** FLASH_BUYER_TOKEN_SECRET, _PUBLIC_KEY and _AUDIENCE as set. */
  buyerTokens: Record<string, string | undefined>;
}

/**
 * A short hash of what must be equal on every gateway of a port. Secrets are part of it, so
 * it is slow to compute (scrypt: a guess costs as much), and /healthz shows it only to
 * callers on this machine.
 */
export function deploymentFingerprint(d: DeploymentIdentity): string {
  let tokens = '';
  if (d.tokensFile !== null) {
    try {
      tokens = readFileSync(d.tokensFile, 'utf8');
    } catch {
      tokens = `unreadable:${d.tokensFile}`;
    }
  }
  const nats = (d.natsUrl ?? '').split(',').map((u) => u.trim()).filter((u) => u !== '').sort();
  const material = JSON.stringify([d.natsPrefix, d.shardCount, nats, d.devMode, d.adminToken ?? '', tokens, Object.entries(d.buyerTokens).sort()]);
  return scryptSync(material, 'flash-reuse-port-v1', 12, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }).toString('hex');
}

/**
 * Null when this gateway may join host:port: nothing answers there yet, or a gateway with the
 * same fingerprint does. Otherwise why not, in a sentence.
 */
export async function portPeerProblem(host: string, port: number, fingerprint: string): Promise<string | null> {
  const probeHost = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  const url = `http://${probeHost.includes(':') ? `[${probeHost}]` : probeHost}:${port}/healthz`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(2000), redirect: 'manual' });
  } catch (e) {
    const code = (e as { cause?: { code?: string } }).cause?.code;
    // Nothing listens there: this is the first gateway of the port.
    if (code === 'ECONNREFUSED') return null;
    return `port ${port} on ${probeHost} could not be checked (${code ?? (e as Error).message}): FLASH_REUSE_PORT joins only a port whose /healthz names this deployment`;
  }
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: not one of ours
  }
  const theirs = (body as { deployment?: unknown } | null)?.deployment;
  if (theirs === fingerprint) return null;
  return typeof theirs === 'string'
    ? `port ${port} is served by gateways of another deployment (deployment ${theirs}, this one ${fingerprint}): FLASH_REUSE_PORT joins only gateways with the same FLASH_NATS_URL, FLASH_NATS_PREFIX, FLASH_SHARDS and credentials`
    : `port ${port} is served by something that is not a FLASH_REUSE_PORT gateway (its /healthz answered ${res.status} without a deployment): it would get a share of this gateway's connections`;
}

/**
 * Whether Linux moves the connections queued to a closing SO_REUSEPORT listener to the other
 * listeners of its port (net.ipv4.tcp_migrate_req, Linux 5.14+), instead of resetting them.
 */
export function kernelMigratesQueuedConnections(): boolean {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}
