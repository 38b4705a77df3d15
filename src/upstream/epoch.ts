/**
 * The client's check of the server's epoch (RFC 6887 §8.5; NAT-PMP's seconds since start, RFC 6886 §3.6, is
 * the same idea): the server lost its mappings when its epoch went backwards (by more than 1 s), or when it
 * advanced much slower or faster than our own clock did since the last answer (a restart in between).
 */
export function createEpochTracker() {
  let prev: { server: number; clientMs: number } | null = null;
  return {
    /** true when this answer says the upstream lost its state since the last one */
    lost(serverEpoch: number, clientMs: number): boolean {
      const p = prev;
      prev = { server: serverEpoch, clientMs };
      if (!p) return false;
      if (serverEpoch + 1 < p.server) return true;
      const c = (clientMs - p.clientMs) / 1000;
      const s = serverEpoch - p.server;
      // §8.5: "if C + 2 < S - S/16 or S + 2 < C - C/16"
      return c + 2 < s - s / 16 || s + 2 < c - c / 16;
    },
    reset(): void {
      prev = null;
    },
  };
}
