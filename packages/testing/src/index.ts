export { NatsServer, NatsCluster, NatsServerError, NatsServerErrorCode, stopAll } from './nats-server';
export type { NatsServerOptions, NatsClusterOptions, ClusterMembership } from './nats-server';
export { parseUvuSummary, tally, stripAnsi, findTestFiles } from './run-tests';
export type { UvuSummary, FileOutcome, Tally } from './run-tests';
export { runtimeSuite } from './runtime-suite';
export type { RuntimeFactory, RuntimePair } from './runtime-suite';
export { waitFor, within } from './wait';
export { transportSuite, TRANSPORT_CASES } from './transport-suite';
export type { TransportFactory, TransportPair, TransportCase } from './transport-suite';
