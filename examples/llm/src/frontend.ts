/**
 * The frontend: an OpenAI-compatible HTTP API (`/v1/models`,
 * `/v1/chat/completions`, `/v1/completions`) in front of the pipeline. It
 * runs the preprocessor (validation, chat template, tokenizer), sends token
 * ids to a router instance, and turns the token stream back into text (SSE
 * chunks or one JSON body). Closing the HTTP connection cancels the stream,
 * which cancels every hop behind it down to the decode worker's `ctx.signal`.
 *
 * HTTP is Hono on `@hono/node-server`: handlers are web-standard
 * `Request → Response`, a streamed body is a pull-based `ReadableStream`
 * (so a slow HTTP client pulls — and grants credit — at its own pace), and
 * the adapter aborts `Request.signal` and cancels the body stream when the
 * client goes away, which is exactly the cancellation hook we need.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono, type Context as HonoContext } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Subscription } from 'rxjs';
import { component, endpoint, injectConfig, toTroupeError, TroupeError, type EndpointClient, type InstanceRecord, type Runtime } from '@troupe/runtime';
import type { PipelineConfig } from './config';
import { chunkBody, completionBody, errorBody, httpStatus, parseRequest, usage, type ParsedRequest } from './openai';
import { Components, type DecodeStats, type GenerateRequest } from './protocol';
import { resumeGeneration, type RouterStats } from './router';
import { TextOutput } from './text-output';
import { applyChatTemplate, encode } from './tokenizer';

/** How long a shutdown lets stopped generations end cleanly (and the decode workers' grace) before cutting them, ms. */
const STOP_MS = 1_000;
/** Largest request body accepted (the prompt is further bounded in tokens by `MAX_CONTEXT_TOKENS`). */
const MAX_BODY_BYTES = 1024 * 1024;
/**
 * The model's context: prompt plus output tokens. Also keeps one prefill
 * reply (blocks × simulated KV bytes) far below NATS's 1 MiB max_payload.
 */
export const MAX_CONTEXT_TOKENS = 16_384;

const encoder = new TextEncoder();
const sse = (data: unknown): Uint8Array => encoder.encode(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);

/**
 * The HTTP frontend of one pipeline namespace.
 *
 * @example
 * const fe = new Frontend(runtime, cfg);
 * const url = await fe.start(); // http://127.0.0.1:8080
 * await fe.stop(10_000);
 */
export class Frontend {
  readonly app = new Hono();
  private server: ServerType | undefined;
  private decoders: readonly InstanceRecord[] = [];
  private modelsSub: Subscription | undefined;
  private readonly router: EndpointClient<GenerateRequest, number>;
  private inflight = 0;
  /** In-flight generations: `kill` cuts one (client gone, stop sequence), `stop` lets it end cleanly (shutdown). */
  private readonly streams = new Set<{ kill: AbortController; stop: AbortController }>();

  constructor(
    private readonly runtime: Runtime,
    private readonly cfg: PipelineConfig,
  ) {
    this.router = runtime.namespace(cfg.namespace).component(Components.router).endpoint('generate').client<GenerateRequest, number>({ router: 'round-robin' });
    this.routes();
  }

  /** Listens; resolves with the URL once the port is bound. */
  async start(): Promise<string> {
    // Listen only once the registry was read, so the first request sees the models already serving.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TroupeError('UNAVAILABLE', 'the registry did not answer a listing within 10 s')), 10_000);
      this.modelsSub = this.runtime.watchInstances(`${this.cfg.namespace}.${Components.decode}.generate`).subscribe({
        next: (list) => {
          this.decoders = list;
          clearTimeout(timer);
          resolve();
        },
        error: (err: unknown) => {
          clearTimeout(timer);
          console.error('frontend: instance watch failed', err);
          reject(err as Error);
        },
      });
    });
    const server = await new Promise<ServerType>((resolve, reject) => {
      const s = serve({ fetch: this.app.fetch, port: this.cfg.port, hostname: this.cfg.host }, () => resolve(s));
      s.once('error', reject);
    });
    this.server = server;
    const { port } = server.address() as AddressInfo;
    return `http://${this.cfg.host}:${port}`;
  }

  /**
   * Stops accepting, lets in-flight responses finish — written to their
   * sockets, not just produced — within `graceMs`; then stops the
   * generations still running (each response ends cleanly with the text so
   * far, `finish_reason: "length"`) and cuts what is left after
   * {@link STOP_MS} more.
   */
  async stop(graceMs: number): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.modelsSub?.unsubscribe();
    if (!server) return;
    // close() resolves once every connection has ended (idle keep-alive ones are closed at once).
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)))]);
    clearTimeout(timer);
    if (!drained && graceMs > 0 && this.streams.size > 0) {
      for (const g of this.streams) g.stop.abort();
      timer = undefined;
      const ended = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STOP_MS)))]);
      clearTimeout(timer);
      if (ended) return;
    }
    if (!drained) {
      for (const g of this.streams) g.kill.abort();
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closed;
    }
  }

  /** What the `frontend` component reports. */
  describe(url: string): FrontendInfo {
    return { url, models: this.models(), inflight: this.inflight };
  }

  /** When the longest-running decode worker serving `model` started, epoch seconds. */
  private servedSince(model: string): number {
    const starts = this.decoders.filter((x) => x.properties['model'] === model).map((x) => x.startedAt);
    return Math.floor(Math.min(...starts) / 1000);
  }

  /** Model names the decode workers in discovery serve. */
  models(): string[] {
    return [...new Set(this.decoders.map((x) => x.properties['model']).filter((m): m is string => typeof m === 'string'))].sort();
  }

  private routes(): void {
    const app = this.app;
    app.get('/v1/models', (c) =>
      c.json({ object: 'list', data: this.models().map((id) => ({ id, object: 'model', created: this.servedSince(id), owned_by: 'troupe' })) }),
    );
    const limit = bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) =>
        this.errorResponse(c, new TroupeError('PAYLOAD_TOO_LARGE', `the request body exceeds ${MAX_BODY_BYTES} bytes`, { data: { param: 'body' } })),
    });
    app.use('/v1/*', limit);
    app.post('/v1/chat/completions', (c) => this.generate('chat', c));
    app.post('/v1/completions', (c) => this.generate('completion', c));
    app.get('/health', (c) => c.json({ status: 'ok', models: this.models(), inflight: this.inflight }));
    app.get('/troupe/stats', async (c) => c.json(await this.stats()));
    app.notFound((c) =>
      c.json({ error: { message: `no route ${c.req.method} ${c.req.path}`, type: 'invalid_request_error', param: null, code: 'not_found' } }, 404),
    );
    app.onError((err, c) => this.errorResponse(c, toTroupeError(err)));
  }

  private errorResponse(c: HonoContext, err: TroupeError): Response {
    const { status } = httpStatus(err.code);
    const code = err.code === 'NOT_FOUND' && (err.data as { param?: string } | undefined)?.param === 'model' ? 'model_not_found' : undefined;
    return c.json(errorBody(err, code), status as 400);
  }

  private async generate(kind: 'chat' | 'completion', c: HonoContext): Promise<Response> {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return this.errorResponse(c, new TroupeError('BAD_REQUEST', 'the request body is not valid JSON', { data: { param: 'body' } }));
    }
    let req: ParsedRequest;
    try {
      req = parseRequest(kind, body);
    } catch (err) {
      return this.errorResponse(c, toTroupeError(err));
    }
    const models = this.models();
    if (models.length === 0)
      return this.errorResponse(c, new TroupeError('NO_INSTANCES', `no decode worker serves any model in namespace ${this.cfg.namespace} yet`));
    if (!models.includes(req.model)) {
      return this.errorResponse(
        c,
        new TroupeError('NOT_FOUND', `the model ${JSON.stringify(req.model)} does not exist; served: ${models.join(', ')}`, { data: { param: 'model' } }),
      );
    }
    const tokens = kind === 'chat' ? applyChatTemplate(req.messages ?? []) : encode(req.prompt ?? '');
    if (tokens.length + req.maxTokens > MAX_CONTEXT_TOKENS) {
      const err = new TroupeError(
        'BAD_REQUEST',
        `this model's maximum context length is ${MAX_CONTEXT_TOKENS} tokens; the prompt has ${tokens.length} and ${req.maxTokens} more were asked for`,
        { data: { param: 'messages' } },
      );
      return c.json(errorBody(err, 'context_length_exceeded'), 400);
    }
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const gen: GenerateRequest = {
      requestId: id,
      tokens,
      promptTokens: tokens.length,
      maxTokens: req.maxTokens,
      temperature: req.temperature,
      seed: req.seed ?? randomInt(0, 2 ** 31),
      ...(req.ignoreEos ? { ignoreEos: true } : {}),
    };
    // Two controllers per request: `abort` kills the stream behind it (the HTTP client going away, a stop
    // sequence, a shutdown past its grace); `stop` asks the decode worker to end it cleanly (a shutdown).
    const abort = new AbortController();
    const generation = { kill: abort, stop: new AbortController() };
    const httpSignal = c.req.raw.signal;
    const onHttpAbort = (): void => abort.abort();
    httpSignal.addEventListener('abort', onHttpAbort, { once: true });
    this.streams.add(generation);
    this.inflight++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      httpSignal.removeEventListener('abort', onHttpAbort);
      this.streams.delete(generation);
      this.inflight--;
    };
    const items = this.router.iterate(gen, {
      signal: abort.signal,
      stopSignal: generation.stop.signal,
      stopGraceMs: STOP_MS,
      timeout: this.cfg.timeoutMs,
      migrate: this.cfg.migrate ? { attempts: 2, resume: resumeGeneration } : undefined,
    });
    const it = items[Symbol.asyncIterator]();
    const out = new TextOutput(req.stop);
    const stopUpstream = (): void => {
      abort.abort();
      void it.return?.().catch(() => undefined);
    };
    try {
      if (!req.stream) {
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          if (out.push(r.value).done) break;
        }
        const { reason } = out.finish();
        stopUpstream();
        return c.json(completionBody(req, { id, created, text: out.text, finish: reason, usage: usage(tokens.length, out.tokens) }));
      }
      // Wait for the first token so an error before any output is a proper HTTP status, not an SSE event.
      const first = await it.next();
      return this.sseResponse(req, { id, created, promptTokens: tokens.length }, { first, it, out, stopUpstream, release });
    } catch (err) {
      stopUpstream();
      release();
      return this.errorResponse(c, toTroupeError(err));
    } finally {
      if (!req.stream) release();
    }
  }

  private sseResponse(
    req: ParsedRequest,
    meta: { id: string; created: number; promptTokens: number },
    s: { first: IteratorResult<number>; it: AsyncIterator<number>; out: TextOutput; stopUpstream: () => void; release: () => void },
  ): Response {
    let pending: IteratorResult<number> | undefined = s.first;
    let finished = false;
    const chunk = (part: Parameters<typeof chunkBody>[3]): Uint8Array => sse(chunkBody(req, meta.id, meta.created, part));
    const end = (controller: ReadableStreamDefaultController<Uint8Array>, tail: string): void => {
      finished = true;
      const { text, reason } = s.out.finish();
      if (tail + text !== '') controller.enqueue(chunk({ text: tail + text }));
      controller.enqueue(chunk({ finish: reason }));
      if (req.includeUsage) controller.enqueue(chunk({ usage: usage(meta.promptTokens, s.out.tokens) }));
      controller.enqueue(sse('[DONE]'));
      controller.close();
      s.stopUpstream();
      s.release();
    };
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        if (req.kind === 'chat') controller.enqueue(chunk({ role: true, text: '' }));
      },
      // One pull → at least one chunk (or the end): the HTTP client's pace drives the credit behind it.
      pull: async (controller) => {
        if (finished) return;
        try {
          let text = '';
          while (text === '') {
            const r: IteratorResult<number> = pending ?? (await s.it.next());
            pending = undefined;
            if (finished) return; // the client went away while we waited
            if (r.done) return end(controller, text);
            const step = s.out.push(r.value);
            text += step.text;
            if (step.done) return end(controller, text);
          }
          controller.enqueue(chunk({ text }));
        } catch (err) {
          if (finished) return; // cancelled by the client: nobody to tell
          // After the first chunk the status is sent: the failure is an SSE error event, then the end.
          finished = true;
          controller.enqueue(sse(errorBody(toTroupeError(err))));
          controller.close();
          s.stopUpstream();
          s.release();
        }
      },
      cancel: () => {
        finished = true;
        s.stopUpstream();
        s.release();
      },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' } });
  }

  /** Every decode worker's and router's counters (for benchmarks and curious operators). */
  async stats(): Promise<{ decode: DecodeStats[]; router: RouterStats[] }> {
    const ns = this.runtime.namespace(this.cfg.namespace);
    const list = await this.runtime.instances(this.cfg.namespace);
    const ask = <T>(comp: string, ids: string[]): Promise<T[]> =>
      Promise.all(ids.map((id) => ns.component(comp).endpoint('stats').client<undefined, T>().direct(id).call(undefined, { timeout: 5_000 })));
    const ids = (comp: string): string[] => list.filter((x) => x.component === comp && x.endpoint === 'stats').map((x) => x.instanceId);
    const [decode, router] = await Promise.all([
      ask<DecodeStats>(Components.decode, ids(Components.decode)),
      ask<RouterStats>(Components.router, ids(Components.router)),
    ]);
    return { decode, router };
  }
}

/** A frontend as discovery lists it. */
export interface FrontendInfo {
  url: string;
  models: string[];
  /** HTTP generations in flight. */
  inflight: number;
}

/**
 * The frontend as a component of the pipeline: it registers the HTTP server
 * in discovery (static property `url`), so `runtime.instances(ns)` lists the
 * frontends and their addresses beside the workers, and answers `info`.
 * The HTTP server itself is owned by the process (started before, drained
 * first at shutdown, so in-flight responses finish while the workers behind
 * them still serve).
 */
@component('frontend')
export class FrontendComponent {
  constructor(@injectConfig() private readonly self: { frontend: Frontend; url: string }) {}

  @endpoint()
  info(): FrontendInfo {
    return this.self.frontend.describe(this.self.url);
  }
}
