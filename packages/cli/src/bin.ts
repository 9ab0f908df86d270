#!/usr/bin/env node
import 'reflect-metadata';
import { main } from './program';

// process.exit after the output is flushed: a runtime that failed to close cleanly must not keep the CLI alive.
void main(process.argv).then((code) => {
  process.exitCode = code;
  const t = setTimeout(() => process.exit(code), 1_000);
  t.unref();
});
