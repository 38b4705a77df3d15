/**
 * Static forwards from the configuration: rows of source `static`, read-only, with no expiry. A sync (at start
 * and on every reload) ends the rows no forward asks for any more and grants the new ones, each a job of the
 * writer (writer.ts); a forward whose port another lease holds is refused and reported, never forced.
 */
import type { Logger } from 'pino';
import type { StaticForwardConfig } from '../config/types.js';
import type { LeaseRow } from './store.js';
import type { GrantResult, LeaseRequest, Refusal, ReleaseResult } from './types.js';
import type { JobOutcome, Writer } from './writer.js';

const unavailable = (detail: string): Refusal => ({ ok: false, reason: 'unavailable', detail });

export interface StaticSyncOptions {
  readonly prepare: (sql: string) => { all(): unknown[] };
  /** active static leases the table counts (from its caches): 0 spares the query */
  readonly staticCount: () => number;
  readonly writer: Pick<Writer, 'submit'>;
  /** the job that ends a static lease the configuration dropped */
  readonly revoke: (id: string) => JobOutcome<ReleaseResult>;
  /** the job that grants a lease (the table's own request) */
  readonly request: (req: LeaseRequest) => JobOutcome<GrantResult>;
  readonly log: Logger;
}

export function createStaticSync(opts: StaticSyncOptions) {
  const { prepare, staticCount, writer, revoke, request, log } = opts;
  const activeStatic = prepare(`SELECT * FROM leases WHERE state = 'active' AND source = 'static' AND read_only = 1`);
  async function syncStatic(
    forwards: readonly StaticForwardConfig[],
  ): Promise<{ added: number; removed: number; refused: string[] }> {
    const want = new Map(
      forwards.map((f) => [
        `${f.protocol}/${f.externalPort}-${f.externalPortEnd}>${f.internalAddress}:${f.internalPort}` +
          `/${f.remoteAddress ?? ''}/${f.description}`,
        f,
      ]),
    );
    // only the static rows (a handful), not every active lease: at 100k leases reading all of them
    // cost ≈ 0.6 s of blocked start-up and 100+ MB of garbage; none at all when the cache counts none
    const rows = staticCount() === 0 ? [] : (activeStatic.all() as LeaseRow[]);
    let removed = 0;
    for (const r of rows) {
      const k =
        `${r.protocol}/${r.external_port}-${r.external_port_end}>${r.internal_address}:${r.internal_port}` +
        `/${r.remote_address ?? ''}/${r.description}`;
      if (want.has(k)) want.delete(k);
      else {
        await writer.submit('static-remove', () => revoke(r.id), unavailable);
        removed++;
      }
    }
    const refused: string[] = [];
    let added = 0;
    for (const f of want.values()) {
      const res = await writer.submit(
        'static-add',
        () =>
          request({
            ...(f.family === 6 ? { family: 6 as const } : {}),
            source: 'static',
            identity: 'external',
            protocol: f.protocol,
            owner: f.internalAddress,
            internalAddress: f.internalAddress,
            internalPort: f.internalPort,
            externalPort: f.externalPort,
            externalPortEnd: f.externalPortEnd,
            allowOtherPort: false,
            remoteAddress: f.remoteAddress,
            lifetime: null,
            description: f.description,
            thirdPartyAllowed: true,
            readOnly: true,
            actor: 'config',
          }),
        unavailable,
      );
      if (res.ok) added++;
      else {
        const why =
          res.reason === 'conflict'
            ? `port held by ${res.holder.source} lease ${res.holder.id} (${res.holder.owner})`
            : res.detail;
        refused.push(`${f.protocol} ${f.externalPort}: ${why}`);
        log.error(
          { protocol: f.protocol, externalPort: f.externalPort, why },
          'static forward from the configuration refused',
        );
      }
    }
    return { added, removed, refused };
  }
  return syncStatic;
}
