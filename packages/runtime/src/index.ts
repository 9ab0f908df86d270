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
  injectMetrics,
  injectProperties,
} from './component/decorators';
export type { EndpointOptions, EndpointDecorator, InstanceInfo, Class, HealthCheck } from './component/decorators';
export { Endpoints } from './endpoint-keys';
export type { DeclaredEndpoints } from './endpoint-keys';
export { on } from './events/event-handlers';
export type { OnOptions } from './events/event-handlers';
export { inject } from 'tsyringe';
export { Runtime } from './runtime';
export { NamespaceRef, ComponentRef, EndpointRef } from './refs';
export type { RuntimeOptions, SpawnOptions, SpawnHandle } from './runtime';
export type { PlaneSettings } from './plane/plane';
export { EndpointClient } from './caller/client';
export type { CallOptions, StreamOptions, RetryOptions, ClientOptions } from './caller/client';
export type { TypedClient, TypedClientOptions, ClientMethod } from './component/typed-client';
export type { MigrateOptions } from './caller/call-options';
export type { StreamObservable } from './caller/stream-iterator';
export type { RuntimeStats } from './plane/stats';
export { RuntimeMetrics } from './ops/metrics';
export type { MetricsOptions } from './ops/metrics';
export type { StatusOptions, RuntimeHealth, InstanceHealth } from './ops/status-server';
export { microServiceName } from './ops/micro';
export { Routers } from './discovery/routers';
export type { Router, RouterSpec, RouteFunction, RouterContext } from './discovery/routers';
export type { InstanceRecord, DiscoverySettings } from './discovery/registry';
export type { Context, ParentContext } from './component/context';
export type { Metadata, TraceContext } from './wire/trace-context';
export { METADATA_LIMITS } from './wire/trace-context';
export { threadFunction } from './threads/thread-function';
export type { ThreadContext, ThreadFunction } from './threads/thread-function';
export type { OnStart, OnStop, FailureThreshold } from './worker/instance';
export type { RestartPolicy, RestartOption } from './worker/supervisor';
export type { InstanceProperties } from './worker/instance-properties';
export { defineEvent, EventScope } from './events/events';
export type { EventEnvelope, EventToken, EventRef, EventPublisher, PublishEventOptions, EventLogOptions } from './events/events';
export type { EventsOptions } from './events/event-subscription';
export { consoleLogger, LogLevel } from './logger';
export type { Logger } from './logger';
export { MsgpackCodec } from './codec/msgpack';
export type { Codec, DecodeLimits } from './codec/codec';
export { MemoryNetwork } from './transport/memory/memory-network';
export type { MemoryNetworkOptions } from './transport/memory/memory-network';
export type { NatsTransportOptions } from './transport/nats/nats-transport';
export { TransportStatus } from './transport/transport';
export type { Transport } from './transport/transport';
