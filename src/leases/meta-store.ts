/**
 * Small named values kept beside the leases (table `meta`): the UPnP device UUIDs, the clock mark
 * (`clock.lastSeen`, see clock-rebase in table.ts). Reads are plain; every write is a job of the writer
 * (writer.ts), between two ticks, so it never joins a tick's transaction.
 */
import type { WriteDoor } from './writer.js';

export function createMetaStore(door: WriteDoor) {
  const get = door.prepare(`SELECT value FROM meta WHERE key = ?`);
  const set = door.prepare(
    `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
  );
  return {
    get(key: string): string | null {
      return (get.get(key) as { value: string } | undefined)?.value ?? null;
    },
    /** resolves when written; rejects when the database refused (the caller says what that costs) */
    set(key: string, value: string): Promise<void> {
      return door.write(`meta ${key}`, () => {
        set.run(key, value);
      });
    },
  };
}
export type MetaStore = ReturnType<typeof createMetaStore>;
