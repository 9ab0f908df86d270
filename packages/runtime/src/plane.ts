import type { Codec } from './codec/codec';
import type { Discovery } from './discovery';
import type { RouterSpec } from './routers';
import type { ReplyInbox } from './inbox';
import type { Logger } from './logger';
import type { Transport } from './transport/transport';

/** Resolved runtime settings that clients and instances read. */
export interface PlaneSettings {
  /** Default deadline of a unary call, ms. */
  readonly requestTimeoutMs: number;
  /** Default deadline of a whole stream, ms. */
  readonly streamTimeoutMs: number;
  /** Default stream credit window, items. */
  readonly streamWindow: number;
  /** Default stream byte window (encoded item bytes in flight), bytes. */
  readonly streamWindowBytes: number;
  /** How often a worker shows an open stream's caller that it is alive (the caller asks for this interval), ms. */
  readonly streamHeartbeatMs: number;
  /** A stream whose worker was silent this long (no frame, heartbeat or probe answer) fails with INSTANCE_LOST, ms. */
  readonly streamIdleMs: number;
  /** How long `stop()` / `close()` wait for in-flight work, ms. */
  readonly gracePeriodMs: number;
  /** Send remote stacks with errors (development only). */
  readonly dev: boolean;
  /** Default instance concurrency (1 = classic actor). */
  readonly concurrency: number;
  /** Default mailbox capacity (waiting messages per instance). */
  readonly mailboxCapacity: number;
  /** Default router of clients. */
  readonly router: RouterSpec;
}

/**
 * The request plane of one runtime: what clients and instances share (the
 * transport, the codec, the muxed reply inbox, the settings). Internal.
 */
export interface RequestPlane {
  readonly transport: Transport;
  readonly codec: Codec;
  readonly inbox: ReplyInbox;
  readonly settings: PlaneSettings;
  readonly logger: Logger;
  /** The discovery watches; undefined when discovery is off. */
  readonly discovery: Discovery | undefined;
  /** A fresh request id. */
  nextRequestId(): string;
}
