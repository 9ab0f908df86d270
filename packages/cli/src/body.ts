import * as fs from 'node:fs';
import { CliError } from './exit-codes';

/**
 * Reads a request body from a command-line argument: inline JSON, `@file`
 * (JSON read from a file) or `-` (JSON read from stdin). No argument means
 * no body (`undefined`, what endpoints without a request take).
 *
 * @example
 * await readBody('{"prompt":"hi"}') // { prompt: 'hi' }
 * await readBody('@req.json')       // the file's JSON
 */
export async function readBody(arg: string | undefined, stdin: NodeJS.ReadableStream = process.stdin): Promise<unknown> {
  if (arg === undefined) return undefined;
  let text: string;
  let from: string;
  if (arg === '-') {
    from = 'stdin';
    text = await readAll(stdin);
  } else if (arg.startsWith('@')) {
    from = arg.slice(1);
    try {
      text = fs.readFileSync(from, 'utf8');
    } catch (err) {
      throw new CliError('USAGE', `cannot read the body file ${from}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else {
    from = 'the argument';
    text = arg;
  }
  return parseJson(text, from);
}

/** Parses JSON or throws a usage error naming where it came from. */
export function parseJson(text: string, from: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError('USAGE', `the body from ${from} is not JSON (${(err as Error).message}); quote it for the shell, e.g. '{"prompt":"hi"}' or '"text"'`);
  }
}

function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (text += d));
    stream.once('end', () => resolve(text));
    stream.once('error', reject);
  });
}

/**
 * JSON text of a value that came through msgpack: bigints become strings,
 * bytes become `{ "$binary": base64 }`, Dates ISO strings (their toJSON).
 *
 * @example
 * toJson({ n: 2n ** 64n }) // '{"n":"18446744073709551616"}'
 */
export function toJson(value: unknown, indent?: number): string {
  const text = JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Uint8Array) return { $binary: Buffer.from(v).toString('base64') };
      return v;
    },
    indent,
  );
  return text === undefined ? 'null' : text;
}
