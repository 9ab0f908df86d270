/**
 * Troupe: a TypeScript actor runtime on NATS. The public door: what an
 * application touches (decorators, the runtime, clients, routers, events,
 * errors). Building blocks for tests and tooling are in
 * `@troupe/runtime/internal`.
 * @module
 */
import 'reflect-metadata';

export { ErrorCode, TroupeError, toTroupeError } from './errors';
export type { WireError } from './errors';
export {
  component,
  endpoint,
  injectConfig,
  injectLogger,
  injectInstance,
  injectClient,
  injectPublisher,
} from './decorators';
export type { EndpointOptions, InstanceInfo, Class } from './decorators';
export { on } from './event-handlers';
export type { OnOptions } from './event-handlers';
export { inject } from 'tsyringe';
export { Runtime, NamespaceRef, ComponentRef, EndpointRef } from './runtime';
export type { RuntimeOptions, SpawnOptions, SpawnHandle } from './runtime';
export type { PlaneSettings } from './plane';
export { EndpointClient } from './client';
export type { CallOptions, StreamOptions, RetryOptions, ClientOptions, TypedClient, TypedClientOptions, ClientMethod } from './client';
export type { MigrateOptions } from './call-options';
export type { StreamObservable } from './stream-iterator';
export type { RuntimeStats } from './stats';
export { Routers } from './routers';
export type { Router, RouterSpec, RouteFunction, RouterContext } from './routers';
export type { InstanceRecord, DiscoverySettings } from './registry';
export type { Context, ParentContext } from './context';
export type { OnStart, OnStop } from './instance';
export { defineEvent, EventScope } from './events';
export type { EventEnvelope, EventToken, EventRef, EventPublisher, PublishEventOptions, EventLogOptions } from './events';
export type { EventsOptions } from './event-subscription';
export { consoleLogger, LogLevel } from './logger';
export type { Logger } from './logger';
export { MsgpackCodec } from './codec/msgpack';
export type { Codec, DecodeLimits } from './codec/codec';
export { MemoryNetwork } from './transport/memory/memory-transport';
export type { MemoryNetworkOptions } from './transport/memory/memory-transport';
export type { NatsTransportOptions } from './transport/nats/nats-transport';
export { TransportStatus } from './transport/transport';
export type { Transport } from './transport/transport';
