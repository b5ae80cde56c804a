import { createHash, randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/plugin/mod.ts';
import { definePlugin, type FerryPlugin, type PluginContext, type PluginLogger } from '../../src/plugin/mod.ts';
import { Courier } from './courier.ts';
import { redactUrl, validate, type EndpointOptions, type WebhookOptions } from './options.ts';
import { Outbox } from './outbox.ts';

export { validate, redactUrl, type EndpointOptions, type WebhookOptions } from './options.ts';
export { sign, verify, SIGNATURE_HEADER, DELIVERY_HEADER } from './sign.ts';
export { Outbox } from './outbox.ts';
export { backoff, classify } from './courier.ts';

/** The outbox file of an endpoint inside the plugin's directory: by its name, else by a hash of its URL. */
export function outboxFileName(endpoint: Pick<EndpointOptions, 'name' | 'url'>): string {
  if (endpoint.name) return `outbox-${endpoint.name}.jsonl`;
  return `outbox-url-${createHash('sha256').update(endpoint.url).digest('hex').slice(0, 16)}.jsonl`;
}

interface Route {
  endpoint: EndpointOptions;
  outbox: Outbox;
  courier: Courier;
}

/** The running plugin: one outbox and one courier per endpoint. */
class Webhook {
  private stopped = false;

  private constructor(
    private readonly routes: Route[],
    private readonly log: PluginLogger,
  ) {}

  static async open(ctx: PluginContext<WebhookOptions>): Promise<Webhook> {
    const routes: Route[] = [];
    try {
      for (const endpoint of ctx.options.endpoints) {
        const outbox = await Outbox.open(join(ctx.dataDir, outboxFileName(endpoint)), ctx.log);
        routes.push({ endpoint, outbox, courier: new Courier({ endpoint, outbox, log: ctx.log, maxRetryMs: ctx.options.maxRetryMs }) });
        const events = endpoint.events ? [...endpoint.events].join(', ') : 'all events';
        ctx.log.info(`Sending ${events} to ${redactUrl(endpoint.url)}${outbox.pending > 0 ? ` (${outbox.pending} queued from before)` : ''}`);
      }
    } catch (err) {
      await Promise.all(routes.map((r) => r.outbox.close()));
      throw err;
    }
    await Webhook.reportOrphans(ctx, new Set(routes.map((r) => outboxFileName(r.endpoint))));
    return new Webhook(routes, ctx.log);
  }

  /** Outboxes of endpoints no longer configured are left alone, but not silently. */
  private static async reportOrphans(ctx: PluginContext<WebhookOptions>, inUse: ReadonlySet<string>): Promise<void> {
    for (const file of await readdir(ctx.dataDir)) {
      if (!/^outbox-.+\.jsonl$/.test(file) || inUse.has(file)) continue;
      const box = await Outbox.open(join(ctx.dataDir, file), ctx.log);
      const left = box.pending;
      await box.close();
      if (left > 0) {
        ctx.log.warn(`${left} undelivered event(s) in ${join(ctx.dataDir, file)}, of an endpoint no longer configured; they stay there (configure the endpoint again, or rename the file to another endpoint's outbox, to send them)`);
      }
    }
  }

  start(): void {
    for (const r of this.routes) r.courier.start();
  }

  /** Gives the event an id and queues it for every endpoint that wants its type. Returns at once. */
  enqueue(event: AuditEvent): void {
    let record: string | null = null;
    for (const r of this.routes) {
      if (r.endpoint.events && !r.endpoint.events.has(event.event)) continue;
      record ??= JSON.stringify(Object.assign({ id: randomUUID() }, event));
      r.outbox.append(record);
    }
  }

  /** Stops delivery at once and makes what is queued durable; does not wait for any receiver. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.routes.map((r) => r.courier.stop()));
    await Promise.all(this.routes.map((r) => r.outbox.close()));
    const left = this.routes.reduce((n, r) => n + r.outbox.pending, 0);
    if (left > 0) this.log.info(`${left} event(s) stay queued for delivery after the next start`);
  }
}

/**
 * Forwards audit events as signed JSON batches to HTTP endpoints, through a durable outbox per endpoint.
 * A fresh plugin object (with its own state) per call; the default export is one of them.
 */
export function createWebhookPlugin(): FerryPlugin<WebhookOptions> {
  let webhook: Webhook | null = null;
  return definePlugin<WebhookOptions>({
    name: 'webhook',
    validate: (raw) => validate(raw),
    async setup(ctx) {
      webhook = await Webhook.open(ctx);
    },
    hooks: {
      'server:start': () => webhook?.start(),
      // Events that arrive after stop (audit lines still being written) are appended synchronously.
      'server:stop': () => webhook?.stop(),
      audit: (event) => webhook?.enqueue(event),
    },
  });
}

export default createWebhookPlugin();
