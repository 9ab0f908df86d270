import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { NatsConnection } from 'nats';
import { commandLine, fastPublish, fastPublisher, type RawProtocol } from './fast-publish';

// Pure: fake protocol handlers shaped as nats.js 2.29's, no network.

const text = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('latin1'));

interface Sent {
  parts: string[];
}

function fakeProtocol(over: Record<string, unknown> = {}): RawProtocol & Sent {
  const p = {
    parts: [] as string[],
    _closed: false,
    noMorePublishing: false,
    info: { headers: true, max_payload: 1024 },
    outBytes: 0,
    outMsgs: 0,
    transport: { version: '2.29.3' },
    publish() {},
    sendCommand(cmd: Uint8Array, ...payloads: Uint8Array[]) {
      p.parts.push(text(cmd) as string, ...payloads.map((x) => text(x) as string));
    },
    ...over,
  };
  return p as unknown as RawProtocol & Sent;
}

const connectionWith = (protocol: unknown): NatsConnection => ({ protocol }) as unknown as NatsConnection;

test('fast publish - the command line is the one nats.js 2.29 writes, for PUB and HPUB, with and without a reply', () => {
  for (const len of [0, 7, 9, 10, 99, 100, 135, 1_048_576]) {
    for (const hlen of [-1, 0, 9, 35, 100]) {
      for (const reply of ['', '_INBOX.abcdefghijkl.1000000042']) {
        const total = hlen < 0 ? len : len + hlen;
        if (reply === '' && hlen === 0 && len === 0)
          assert.is(text(commandLine('bench.echo', { reply: undefined, hdr: new Uint8Array(0), data: new Uint8Array(0) })), 'HPUB bench.echo 0 0\r\n');
        const head = hlen < 0 ? 'PUB' : 'HPUB';
        const want = `${head} bench.echo ${reply ? `${reply} ` : ''}${hlen < 0 ? '' : `${hlen} `}${total}\r\n`;
        const m = { reply, hdr: hlen < 0 ? undefined : new Uint8Array(hlen), data: new Uint8Array(len) };
        assert.is(text(commandLine('bench.echo', m)), want);
      }
    }
  }
});

test('fast publish - a subject or reply outside ASCII has no line (nats.js encodes it as UTF-8)', () => {
  assert.is(commandLine('bench.é', { reply: undefined, hdr: undefined, data: new Uint8Array(1) }), undefined);
  assert.is(commandLine('bench.echo', { reply: 'r.\u{1F600}', hdr: new Uint8Array(10), data: new Uint8Array(10) }), undefined);
});

test('fast publish - accepts the protocol handler of nats.js 2.29', () => {
  const p = fakeProtocol();
  assert.is(fastPublisher(connectionWith(p)), p);
  assert.is(fastPublisher(connectionWith(fakeProtocol({ transport: { version: '2.29.0' } }))) !== undefined, true);
});

test('fast publish - the fallback engages when the internals are not the expected ones', () => {
  const changed: Array<[string, unknown]> = [
    ['no protocol handler', undefined],
    ['another release', fakeProtocol({ transport: { version: '2.30.0' } })],
    ['a major release', fakeProtocol({ transport: { version: '3.0.0' } })],
    ['no version', fakeProtocol({ transport: {} })],
    ['no transport', fakeProtocol({ transport: undefined })],
    ['sendCommand renamed', fakeProtocol({ sendCommand: undefined })],
    ['publish renamed', fakeProtocol({ publish: undefined })],
    ['_closed renamed', fakeProtocol({ _closed: undefined })],
    ['noMorePublishing a function', fakeProtocol({ noMorePublishing: () => false })],
    ['outBytes renamed', fakeProtocol({ outBytes: undefined })],
    ['outMsgs a bigint', fakeProtocol({ outMsgs: 0n })],
  ];
  for (const [what, protocol] of changed) assert.is(fastPublisher(connectionWith(protocol)), undefined, what);
});

test('fast publish - queues line, header block, body and CRLF, and counts the message as nats.js does', () => {
  const p = fakeProtocol();
  const hdr = Buffer.from('NATS/1.0\r\nA: b\r\n\r\n');
  assert.is(fastPublish(p, 'a.b', { reply: 'r.1', hdr, data: Buffer.from('hello') }), true);
  assert.is(fastPublish(p, 'a.b', { reply: undefined, hdr: undefined, data: Buffer.from('hi') }), true);
  assert.is(fastPublish(p, 'a.b', { reply: '', hdr: undefined, data: new Uint8Array(0) }), true);
  assert.equal(p.parts, ['HPUB a.b r.1 18 23\r\n', 'NATS/1.0\r\nA: b\r\n\r\n', 'hello', '\r\n', 'PUB a.b 2\r\n', 'hi', '\r\n', 'PUB a.b 0\r\n', '', '\r\n']);
  assert.is(p.outMsgs, 3);
  assert.is(p.outBytes, 25);
});

test('fast publish - leaves to nats.js (sending nothing) a publish that is not the plain case', () => {
  const body = Buffer.from('x'.repeat(10));
  const hdr = Buffer.from('NATS/1.0\r\n\r\n');
  const cases: Array<[string, RawProtocol & Sent, string, Uint8Array | undefined]> = [
    ['closed', fakeProtocol({ _closed: true }), 'a.b', undefined],
    ['draining', fakeProtocol({ noMorePublishing: true }), 'a.b', undefined],
    ['before the server INFO', fakeProtocol({ info: undefined }), 'a.b', undefined],
    ['over max_payload', fakeProtocol({ info: { headers: true, max_payload: 9 } }), 'a.b', undefined],
    ['header block over max_payload', fakeProtocol({ info: { headers: true, max_payload: 15 } }), 'a.b', hdr],
    ['headers the server does not take', fakeProtocol({ info: { headers: false, max_payload: 1024 } }), 'a.b', hdr],
    ['a subject outside ASCII', fakeProtocol(), 'a.ü', undefined],
  ];
  for (const [what, p, subject, h] of cases) {
    assert.is(fastPublish(p, subject, { reply: undefined, hdr: h, data: body }), false, what);
    assert.equal(p.parts, [], what);
    assert.is(p.outMsgs, 0, what);
  }
});

test.run();
