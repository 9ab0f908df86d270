#!/usr/bin/env node
import 'reflect-metadata';
import { main } from './program';

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

// Exit once stdout and stderr are flushed: a dial still pending to a blackholed
// address (or anything else left open) must not keep the command alive.
void main(process.argv).then(async (code) => {
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
});
