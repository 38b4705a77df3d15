/**
 * Running nft: one-shot `nft -f -` (one transaction per script) and a long-lived `nft -i` where each
 * line is one transaction. `nft -i` prints nothing on success, so after each batch line we send a
 * marker line that is certain to fail to parse; nft answers it on stderr, after whatever the batch
 * printed. Anything before the marker's error is the batch's error: the outcome is never guessed.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface CommandPrefix {
  /** run inside this network namespace (`ip netns exec NAME ...`) */
  readonly netns?: string | undefined;
  readonly ipPath?: string | undefined;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly signal: NodeJS.Signals | null;
}

/** argv for a tool, inside the namespace when one is set */
export function argvFor(prefix: CommandPrefix, tool: string, args: readonly string[]): [string, string[]] {
  return prefix.netns ? [prefix.ipPath ?? 'ip', ['netns', 'exec', prefix.netns, tool, ...args]] : [tool, [...args]];
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly result: RunResult | null,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'CommandError';
  }
}

/**
 * runs a command to completion; rejects only when it cannot be started, times out, or `onStdout` throws
 * (check `code`). With `onStdout`, stdout goes to it as text as it arrives and is not kept in the result.
 */
export function run(
  prefix: CommandPrefix,
  tool: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; onStdout?: (text: string) => void } = {},
): Promise<RunResult> {
  const [cmd, argv] = argvFor(prefix, tool, args);
  return new Promise((resolve, reject) => {
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(cmd, argv, { stdio: 'pipe' });
    } catch (err) {
      reject(new CommandError(`cannot start ${tool}: ${(err as Error).message}`, null, err));
      return;
    }
    const out: Buffer[] = [];
    const errb: Buffer[] = [];
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
      reject(
        new CommandError(
          `${tool} ${args.join(' ').slice(0, 80)}: no answer within ${opts.timeoutMs ?? 60000} ms`,
          null,
        ),
      );
    }, opts.timeoutMs ?? 60000);
    const onStdout = opts.onStdout;
    if (onStdout) {
      child.stdout.setEncoding('utf8'); // chunks never split a character
      child.stdout.on('data', (text: string) => {
        if (done) return;
        try {
          onStdout(text);
        } catch (err) {
          done = true;
          clearTimeout(timer);
          child.kill('SIGKILL');
          reject(err);
        }
      });
    } else {
      child.stdout.on('data', (d: Buffer) => out.push(d));
    }
    child.stderr.on('data', (d: Buffer) => errb.push(d));
    child.on('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new CommandError(`cannot start ${tool}: ${err.message}`, null, err));
    });
    child.on('close', (code, signal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(errb).toString('utf8'),
      });
    });
    child.stdin.on('error', () => {
      /* the close handler reports */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** `nft -f -` with the script on stdin: one atomic transaction */
export async function nftScript(
  prefix: CommandPrefix,
  nftPath: string,
  script: string,
  timeoutMs = 120_000,
): Promise<void> {
  const r = await run(prefix, nftPath, ['-f', '-'], { input: script, timeoutMs });
  if (r.code !== 0) throw new CommandError(firstLines(r.stderr) || `nft exited with ${r.code ?? r.signal}`, r);
}

export function firstLines(s: string, n = 6): string {
  return s
    .trim()
    .split('\n')
    .slice(0, n)
    .map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l))
    .join('\n');
}

/**
 * `nft -i` keeps a libedit history: it loads `$HOME/.nft.history` at start, appends every line, and
 * looks up the last entry by walking the whole list before each append, then writes the file back at
 * exit. Under a daemon that means a history file growing without bound in root's home (20 MB after
 * a day of tests here) and a per-command cost growing with it: 2.6 ms per round trip with that file,
 * 0.23 ms without. So the child gets a HOME where no file can exist, and is replaced after
 * `maxLines` lines so its in-memory history stays short.
 */
const NO_HISTORY_HOME = '/dev/null';

/** a long-lived `nft -i`; one batch at a time (callers serialise) */
export class NftInteractive {
  private child: ChildProcessWithoutNullStreams | null = null;
  private buf = '';
  private seq = 0;
  private lines = 0;
  private pending: {
    marker: RegExp;
    resolve: (out: string) => void;
    reject: (e: Error) => void;
    timer: NodeJS.Timeout;
  } | null = null;
  private exitReason: string | null = null;

  constructor(
    private readonly prefix: CommandPrefix,
    private readonly nftPath: string,
    private readonly timeoutMs = 30_000,
    private readonly maxLines = 5_000,
  ) {}

  get running(): boolean {
    return this.child !== null;
  }

  private start(): ChildProcessWithoutNullStreams {
    const [cmd, argv] = argvFor(this.prefix, this.nftPath, ['-i']);
    const child = spawn(cmd, argv, { stdio: 'pipe', env: { ...process.env, HOME: NO_HISTORY_HOME } });
    this.exitReason = null;
    this.buf = '';
    this.lines = 0;
    child.stdout.on('data', () => {
      /* batches print nothing; ignore */
    });
    child.stderr.on('data', (d: Buffer) => {
      if (this.child === child) {
        this.buf += d.toString('utf8');
        this.poll();
      }
    });
    const gone = (why: string) => {
      if (this.child !== child) return;
      this.child = null;
      this.exitReason = why;
      const p = this.pending;
      this.pending = null;
      if (p) {
        clearTimeout(p.timer);
        p.reject(new CommandError(`nft -i ended (${why}) during a batch; outcome unknown`, null));
      }
    };
    child.on('error', (err) => gone(err.message));
    child.on('close', (code, signal) => gone(`exit ${code ?? signal}`));
    child.stdin.on('error', () => {
      /* close reports */
    });
    this.child = child;
    return child;
  }

  private poll(): void {
    const p = this.pending;
    if (!p) return;
    const m = p.marker.exec(this.buf);
    if (!m) return;
    const before = this.buf.slice(0, m.index);
    this.buf = this.buf.slice(m.index + m[0].length);
    this.pending = null;
    clearTimeout(p.timer);
    p.resolve(before);
  }

  /** runs one line as one transaction; rejects with nft's error text when it was not applied */
  run(line: string): Promise<void> {
    if (this.pending) return Promise.reject(new Error('NftInteractive: one batch at a time'));
    if (line.includes('\n')) return Promise.reject(new Error('NftInteractive: a batch is one line'));
    if (this.child && this.lines >= this.maxLines) this.kill(); // between batches: nothing is pending
    const child = this.child ?? this.start();
    this.lines += 2;
    const n = ++this.seq;
    const tag = `portd_marker_${process.pid}_${n}`;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = null;
        this.kill();
        reject(new CommandError(`nft -i: no answer within ${this.timeoutMs} ms; outcome unknown`, null));
      }, this.timeoutMs);
      // the marker's own error: "Error: syntax error, ...\n<tag>\n   ^\n"
      this.pending = { marker: new RegExp(`(?:^|\\n)Error:[^\\n]*\\n${tag}\\n[ ^]*\\^\\n`), resolve, reject, timer };
      child.stdin.write(`${line}\n${tag}\n`);
    }).then((out) => {
      if (out.trim().length > 0)
        throw new CommandError(firstLines(out), { code: 1, signal: null, stdout: '', stderr: out });
    });
  }

  kill(): void {
    const c = this.child;
    this.child = null;
    if (c) {
      c.stdin.end();
      c.kill('SIGTERM');
    }
  }

  get lastExit(): string | null {
    return this.exitReason;
  }
}
