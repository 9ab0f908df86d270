import type { MemoryMessage, MemorySub } from './memory-bus';

// Deliveries per queue chunk: growth never copies, and a drained burst leaves one spare chunk.
const CHUNK = 2048;

interface Chunk {
  readonly subs: (MemorySub | undefined)[];
  readonly msgs: (MemoryMessage | undefined)[];
  next: Chunk | undefined;
}

function newChunk(): Chunk {
  return { subs: new Array<MemorySub | undefined>(CHUNK).fill(undefined), msgs: new Array<MemoryMessage | undefined>(CHUNK).fill(undefined), next: undefined };
}

/** A FIFO of (subscription, message) pairs in linked fixed-size chunks. */
export class DeliveryQueue {
  size = 0;
  private head: Chunk = newChunk();
  private tail: Chunk = this.head;
  private headIdx = 0;
  private tailIdx = 0;
  private spare: Chunk | undefined;

  push(sub: MemorySub, msg: MemoryMessage): void {
    if (this.tailIdx === CHUNK) {
      const c = this.spare ?? newChunk();
      this.spare = undefined;
      this.tail.next = c;
      this.tail = c;
      this.tailIdx = 0;
    }
    this.tail.subs[this.tailIdx] = sub;
    this.tail.msgs[this.tailIdx] = msg;
    this.tailIdx++;
    this.size++;
  }

  /** The subscription of the next pair; call only when size > 0, before shift(). */
  peekSub(): MemorySub {
    if (this.headIdx === CHUNK) {
      const done = this.head;
      this.head = done.next as Chunk;
      done.next = undefined;
      this.spare = done;
      this.headIdx = 0;
    }
    return this.head.subs[this.headIdx] as MemorySub;
  }

  /** Removes the next pair and returns its message; call after peekSub(). */
  shift(): MemoryMessage {
    const i = this.headIdx;
    const msg = this.head.msgs[i] as MemoryMessage;
    this.head.subs[i] = undefined;
    this.head.msgs[i] = undefined;
    this.size--;
    if (this.size === 0) {
      // Empty: start over at the front of the current chunk.
      this.tail = this.head;
      this.head.next = undefined;
      this.headIdx = 0;
      this.tailIdx = 0;
    } else {
      this.headIdx = i + 1;
    }
    return msg;
  }
}
