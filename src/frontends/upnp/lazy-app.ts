/**
 * The UPnP front-end's fastify app, built at the first HTTP request instead of at start (issue 17,
 * footprint): fastify and what it pulls in are ≈ 6 MiB of the idle RSS, and on most LANs nothing but
 * SSDP answers happen for hours. The front-end registers its routes, hooks and handlers on this
 * recorder exactly as on a fastify instance; build() imports fastify, replays them in order on a real
 * instance and makes it ready. The HTTP servers (node:http) are bound at start either way, so
 * LOCATION URLs and SSDP do not wait for it.
 */
import type { FastifyInstance, FastifyServerOptions } from 'fastify';

/** the registration calls the front-end makes before the app exists; anything else needs build() */
const RECORDED = [
  'addHttpMethod',
  'removeAllContentTypeParsers',
  'addContentTypeParser',
  'setErrorHandler',
  'setNotFoundHandler',
  'addHook',
  'get',
  'post',
  'route',
] as const;
type Recorded = (typeof RECORDED)[number];
export type LazyFastify = Pick<FastifyInstance, Recorded> & {
  /** imports fastify and makes the app (once; a failed build is tried again at the next call) */
  build(): Promise<FastifyInstance>;
  /** the app once build() has finished, else undefined */
  built(): FastifyInstance | undefined;
  /** closes the app if it was built (waiting for a build in flight); never builds one */
  close(): Promise<void>;
};

export function createLazyFastify(
  options: FastifyServerOptions,
  load: () => Promise<{ default: (o: FastifyServerOptions) => FastifyInstance }> = () =>
    import('fastify') as unknown as Promise<{ default: (o: FastifyServerOptions) => FastifyInstance }>,
): LazyFastify {
  const calls: [Recorded, unknown[]][] = [];
  let app: FastifyInstance | undefined;
  let building: Promise<FastifyInstance> | null = null;
  const recorder: Record<string, unknown> = {
    build(): Promise<FastifyInstance> {
      building ??= (async () => {
        const real = (await load()).default(options);
        for (const [name, args] of calls) (real[name] as (...a: unknown[]) => unknown).apply(real, args);
        await real.ready();
        app = real;
        return real;
      })().catch((e) => {
        building = null;
        throw e;
      });
      return building;
    },
    built: () => app,
    async close(): Promise<void> {
      const real = building ? await building.catch(() => undefined) : app;
      await real?.close();
    },
  };
  for (const name of RECORDED)
    recorder[name] = (...args: unknown[]) => {
      if (app || building) throw new Error(`upnp app: ${name}() after the app was built`);
      calls.push([name, args]);
      return recorder;
    };
  return recorder as unknown as LazyFastify;
}
