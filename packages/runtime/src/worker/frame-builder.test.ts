import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MsgpackCodec } from '../codec/msgpack';
import { FrameBuilder } from './frame-builder';

const codec = new MsgpackCodec();

test('frame builder - frames of 0, 1, 15, 16, 1,024 and 70,000 items decode to the items, in order', () => {
  const builder = new FrameBuilder();
  for (const n of [0, 1, 15, 16, 1024, 70_000]) {
    const items = Array.from({ length: n }, (_, i) => ({ i, s: 'x'.repeat(i % 40) }));
    for (const item of items) builder.add(codec.encodeShared(item));
    assert.is(builder.count, n);
    const frame = builder.take();
    assert.equal(codec.decode(frame), items, `${n} items`);
    assert.is(builder.count, 0);
    assert.is(builder.bytes, 0);
  }
});

test('frame builder - a taken frame is its own copy: later frames built in the reused buffer do not change it', () => {
  const builder = new FrameBuilder();
  builder.add(codec.encode('first'));
  const first = builder.take();
  builder.add(codec.encode('second'));
  const second = builder.take();
  assert.equal(codec.decode(first), ['first']);
  assert.equal(codec.decode(second), ['second']);
});

test('codec - encodeShared gives the bytes encode gives', () => {
  const value = { a: [1, 2, 3], at: new Date(0), big: 2n ** 70n };
  assert.equal([...codec.encodeShared(value)], [...codec.encode(value)]);
});

test.run();
