/**
 * `@troupe/cli`: the `troupe` command. The program is exported for tests
 * and for tools that embed it; the binary is `dist/bin.js`.
 * @module
 */
export { main, program } from './program';
export { ExitCode, CliError, toCliError } from './exit-codes';
export type { CliErrorCode } from './exit-codes';
export { parseScope, parseEndpoint } from './address';
export type { Scope } from './address';
export { readBody, toJson } from './body';
export { gatherStats, STATS_RESPONSE } from './micro';
export type { MicroStats, MicroEndpointStats } from './micro';
export type { LsDocument, LsItem } from './commands/ls';
export type { StatsDocument, StatsEndpoint, StatsInstance } from './commands/stats';
export type { EventLine } from './commands/events';
