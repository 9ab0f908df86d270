/**
 * The internal door, `@troupe/runtime/internal`: everything the public door
 * (`@troupe/runtime`) exports plus the parts the testing package, the
 * benchmarks and advanced users build on (subjects, wire protocol, codec,
 * transports, mailbox). Not covered by semver: names here may change in a
 * minor release, as nats.js's own `./internal`.
 * @module
 */
import 'reflect-metadata';

export { ErrorCode, TroupeError, toTroupeError, fromWire, isErrorCode, isRemoteError } from './errors';
export type { WireError } from './errors';
export { NAME_RULE, validateName, validateInstanceId, INSTANCE_ID_RULE } from './names';
export type { NameKind } from './names';
export { newInstanceId } from './ids';
export { withTimeout } from './timeout';
export {
  endpointAddress,
  queueSubject,
  queueGroup,
  mailboxSubject,
  namespaceEventSubject,
  componentEventSubject,
  namespaceEventWildcard,
  componentEventWildcard,
  anyComponentEventWildcard,
  eventLogName,
  parseEventSubject,
  leaseBeatSubject,
  LEASE_BEAT_PREFIX,
  LEASE_BEAT_WILDCARD,
} from './wire/subjects';
export type { EndpointAddress, EventSubjectParts } from './wire/subjects';
export {
  component,
  endpoint,
  componentMeta,
  injectConfig,
  injectLogger,
  injectInstance,
  injectClient,
  injectPublisher,
  injectMetrics,
  injectProperties,
  CONFIG,
  LOGGER,
  INSTANCE,
  PUBLISHER,
  PROPERTIES,
} from './component/decorators';
export type {
  ComponentMeta,
  EndpointMeta,
  EndpointOptions,
  EndpointDecorator,
  InstanceInfo,
  Class,
  HealthCheck,
  ResolvedHealthCheck,
} from './component/decorators';
export { Endpoints } from './endpoint-keys';
export type { DeclaredEndpoints } from './endpoint-keys';
export { refuseStandardDecorator } from './decorator-shape';
export { Runtime, retainedState } from './runtime';
export { NamespaceRef, ComponentRef, EndpointRef } from './refs';
export type { RuntimeOptions, SpawnOptions, SpawnHandle, RetainedState } from './runtime';
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
export { MicroType, SERVICE_API_PREFIX } from './ops/micro';
export { Meter, EndpointMeter, CallMeter, Durations, DURATION_BUCKETS } from './plane/meter';
export type { MeterSource } from './plane/meter';
export { Routers, resolveRouter } from './discovery/routers';
export type { Router, RouterSpec, RouteFunction, RouterContext } from './discovery/routers';
export type { InstanceRecord, DiscoverySettings, LeaseBeat } from './discovery/registry';
export type { Context, ParentContext } from './component/context';
export type { Metadata, TraceContext } from './wire/trace-context';
export { METADATA_LIMITS } from './wire/trace-context';
export { threadFunction } from './threads/thread-function';
export type { ThreadContext, ThreadFunction } from './threads/thread-function';
export type { OnStart, OnStop, FailureThreshold } from './worker/instance';
export type { RestartPolicy, RestartOption } from './worker/supervisor';
export { PropertyBoard } from './worker/instance-properties';
export type { InstanceProperties } from './worker/instance-properties';
export { defineEvent, EventScope, EVENT_HEADERS, DEFAULT_EVENT_LOG } from './events/events';
export type { EventEnvelope, EventToken, EventRef, EventPublisher, PublishEventOptions, EventLogOptions } from './events/events';
export type { EventsOptions } from './events/event-subscription';
export { on } from './events/event-handlers';
export type { OnOptions } from './events/event-handlers';
export { Mailbox } from './worker/mailbox';
export { consoleLogger, LogLevel } from './logger';
export type { Logger } from './logger';
export { PROTOCOL_VERSION } from './wire/protocol';
export { decodeMetadata, encodeMetadata, formatTraceparent, parseTraceparent } from './wire/trace-context';
export type { Traceparent } from './wire/trace-context';
export { tracingActive } from './plane/telemetry';
export { inject } from 'tsyringe';
export { MsgpackCodec } from './codec/msgpack';
export { DEFAULT_DECODE_LIMITS } from './codec/codec';
export type { Codec, DecodeLimits } from './codec/codec';
export { TransportStatus, deliverTo } from './transport/transport';
export type {
  Transport,
  Headers,
  HeaderBlock,
  PublishOptions,
  SubscribeOptions,
  RequestOptions,
  TransportMessage,
  ByteSpan,
  MessageHandler,
  MessageTarget,
  TransportSubscription,
  LogOptions,
  MessageLog,
  LogConsumeOptions,
  LogMessage,
  LogConsumer,
  Pulse,
  PulseOptions,
  Persistence,
  KvBucket,
  KvEntry,
  KvOptions,
} from './transport/transport';
export { NatsTransport, NATS_DEFAULTS } from './transport/nats/nats-transport';
export type { NatsTransportOptions } from './transport/nats/nats-transport';
export { MemoryNetwork, MEMORY_DEFAULT_MAX_PAYLOAD } from './transport/memory/memory-network';
export { MemoryTransport } from './transport/memory/memory-transport';
export type { MemoryNetworkOptions, MemoryNetworkStats } from './transport/memory/memory-network';
export { resolveRestart, resolveFailures, spawnFailure } from './worker/supervisor';
