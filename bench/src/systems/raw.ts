/**
 * The raw nats.js anchors. The worker echoes in a queue group (decode and
 * re-encode, as an application would) and streams one publish per item to
 * the caller's reply subject, then an empty end marker: no flow control.
 * `raw_mux` is the hand-written muxed inbox (one wildcard subscription,
 * `publish` with a reply subject, no per-call timer); `raw_request` is
 * `nc.request()` with nats.js's default options (async traces on, 1 s
 * timeout): what users write.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { connect as natsConnect, createInbox, type Msg, type NatsConnection } from 'nats';
import { type EventPayload, type Item, makeItem, NAMES, PAYLOAD, type PublishReport, type PublishSpec, type StreamRequest } from '../payload';
import { publishRun } from '../publish';
import { type ConnectDriver, type Driver, publishBound, type StartWorker, usSince } from './system';

const EMPTY = new Uint8Array(0);
/** A raw stream with no message for this long has lost its tail (e.g. a slow-consumer cut). */
const STREAM_IDLE_MS = 5_000;
const STREAM_POLL_MS = 250;

// Reused codec instances: `encode()`/`decode()` build a new one per call.
const encoder = new Encoder();
const decoder = new Decoder();

export const startWorker: StartWorker = async (url) => {
  const nc = await natsConnect({ servers: url, name: `bench-raw-worker-${process.pid}` });
  nc.subscribe(NAMES.rawEcho, {
    queue: NAMES.rawQueue,
    callback: (err, m) => {
      if (!err) m.respond(encoder.encode(decoder.decode(m.data)));
    },
  });
  nc.subscribe(NAMES.rawItems, {
    queue: NAMES.rawQueue,
    callback: (err, m) => {
      if (err || !m.reply) return;
      const { n } = decoder.decode(m.data) as StreamRequest;
      for (let i = 0; i < n; i++) nc.publish(m.reply, encoder.encode(makeItem(i)));
      nc.publish(m.reply, EMPTY);
    },
  });
  nc.subscribe(NAMES.rawFirst, {
    queue: NAMES.rawQueue,
    callback: (err, m) => {
      if (!err) m.respond(encoder.encode(makeItem(0)));
    },
  });
  // Event cases: a run of plain publishes of the msgpack payload (no header), `nc.flush()` as the flow control.
  nc.subscribe(NAMES.rawEventControl, {
    callback: (err, m) => {
      if (err) return;
      const spec = decoder.decode(m.data) as PublishSpec;
      void publishRun(
        spec,
        (e) => nc.publish(NAMES.rawEvent, encoder.encode(e)),
        () => nc.flush(),
      ).then(
        (report) => m.respond(encoder.encode(report)),
        (e: unknown) => console.error(`raw event run failed: ${(e as Error)?.message ?? String(e)}`),
      );
    },
  });
  await nc.flush(); // the server has the interest before we report ready
  return { close: () => closeNats(nc) };
};

/** The raw event anchor: one plain subscription decoding each msgpack event; runs asked of the worker with `nc.request()`. */
export const connectPubsub: ConnectDriver = async (url) => {
  const nc = await natsConnect({ servers: url, name: `bench-raw-pubsub-${process.pid}` });
  return {
    events: async (onEvent) => {
      const sub = nc.subscribe(NAMES.rawEvent, {
        callback: (err, m) => {
          if (!err) onEvent(decoder.decode(m.data) as EventPayload, 0);
        },
      });
      await nc.flush(); // the server has the interest
      return {
        publish: async (spec) =>
          decoder.decode((await nc.request(NAMES.rawEventControl, encoder.encode(spec), { timeout: publishBound(spec) })).data) as PublishReport,
        close: () => sub.unsubscribe(),
      };
    },
    close: () => closeNats(nc),
  };
};

export const connectMux: ConnectDriver = async (url) => {
  const nc = await natsConnect({ servers: url, name: `bench-raw-mux-${process.pid}` });
  const root = createInbox();
  const cut = root.length + 1;
  const waiting = new Map<string, (m: Msg) => void>();
  let seq = 0;
  nc.subscribe(`${root}.*`, {
    callback: (err, m) => {
      if (!err) waiting.get(m.subject.slice(cut))?.(m);
    },
  });
  await nc.flush();
  const open = (handler: (m: Msg) => void): [string, string] => {
    const key = (++seq).toString(36);
    waiting.set(key, handler);
    return [key, `${root}.${key}`];
  };
  const driver: Driver = {
    unary: (payload = PAYLOAD) =>
      new Promise((resolve, reject) => {
        const [key, reply] = open((m) => {
          waiting.delete(key);
          if (m.headers?.code === 503) reject(new Error(`no responders on ${NAMES.rawEcho}`));
          else resolve(decoder.decode(m.data));
        });
        nc.publish(NAMES.rawEcho, encoder.encode(payload), { reply });
      }),
    stream: (n, onItem) =>
      new Promise<void>((resolve, reject) => {
        let count = 0;
        let seen = 0;
        let quietMs = 0;
        // Polled, not re-armed per message: a timer per item would cost more than the item.
        const watchdog = setInterval(() => {
          if (count !== seen) {
            seen = count;
            quietMs = 0;
          } else if ((quietMs += STREAM_POLL_MS) >= STREAM_IDLE_MS) {
            finish(new Error(`raw stream: no message for ${STREAM_IDLE_MS} ms after ${count} items (end marker lost)`));
          }
        }, STREAM_POLL_MS);
        const finish = (err?: Error): void => {
          waiting.delete(key);
          clearInterval(watchdog);
          if (err) reject(err);
          else resolve();
        };
        const [key, reply] = open((m) => {
          if (m.headers?.code === 503) return finish(new Error(`no responders on ${NAMES.rawItems}`));
          if (m.data.length === 0) return finish();
          count++;
          onItem(decoder.decode(m.data) as Item);
        });
        nc.publish(NAMES.rawItems, encoder.encode({ n } satisfies StreamRequest), { reply });
      }),
    close: () => closeNats(nc),
  };
  return driver;
};

export const connectRequest: ConnectDriver = async (url) => {
  const nc = await natsConnect({ servers: url, name: `bench-raw-request-${process.pid}` });
  return {
    unary: async (payload = PAYLOAD) => decoder.decode((await nc.request(NAMES.rawEcho, encoder.encode(payload))).data),
    firstItem: async () => {
      const t0 = process.hrtime.bigint();
      const m = await nc.request(NAMES.rawFirst, encoder.encode({ n: 1 } satisfies StreamRequest));
      decoder.decode(m.data);
      return usSince(t0);
    },
    close: () => closeNats(nc),
  };
};

async function closeNats(nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return;
  await nc.drain().catch(() => nc.close());
}
