import { queueGroup, queueSubject, type EndpointAddress } from '../wire/subjects';
import type { Transport, TransportMessage, TransportSubscription } from '../transport/transport';

/** One instance as a member of its endpoint's queue subscription in this process. */
export interface QueueMember {
  /** Whether it takes new queue messages now (started, not stopping or broken). */
  readonly accepting: boolean;
  /** Handles one message (the instance's own mailbox path). */
  deliver(msg: TransportMessage): void;
  /** Where it is in its hub's member list, -1 outside one: kept by the hub (a member joins one hub), so a stop of 100,000 removes each in O(1) without a map. */
  hubSlot: number;
}

/**
 * A member's place in its endpoint's queue subscription: the hub it joined
 * (shared by every member; the member's own state is its {@link QueueMember.hubSlot}),
 * so 100,000 members hold no object each. Left through {@link QueueHubs.leave}.
 */
export type QueueMembership = QueueHub;

/**
 * The queue-group side of every instance of this process, one subscription
 * per endpoint (not one per instance): the server balances between
 * processes, and each process between its own instances (round-robin over
 * those accepting). Each instance keeps its own mailbox subscription
 * (`ns.comp.ep.<instance_id>`): a direct call still reaches exactly it, and
 * "no responders" still means it is gone.
 */
export class QueueHubs {
  private readonly hubs = new Map<string, QueueHub>();

  constructor(
    private readonly transport: Transport,
    /** Answers a queue message no local instance can take (all of them stopping): a refusal, so the caller sends it elsewhere. */
    private readonly refuse: (msg: TransportMessage) => void,
  ) {}

  /** Joins `member` to the queue subscription of `address` (subscribing it on first use). */
  join(address: EndpointAddress, member: QueueMember): QueueMembership {
    const subject = queueSubject(address);
    let hub = this.hubs.get(subject);
    if (!hub || hub.closing) {
      const fresh = new QueueHub(subject, this.refuse);
      fresh.sub = this.transport.subscribe(subject, (msg) => fresh.dispatch(msg), { queue: queueGroup(address) });
      this.hubs.set(subject, fresh);
      hub = fresh;
    }
    hub.add(member);
    return hub;
  }

  /**
   * `member` leaves `joined`: no new queue message goes to it. When it was the
   * last member, the subscription leaves the server's queue group — drained
   * (`drain`: what the server already sent is still delivered, to this
   * member) or unsubscribed at once.
   */
  async leave(joined: QueueMembership, member: QueueMember, drain: boolean): Promise<void> {
    // Left already (a broken instance, then its stop): only the last member closes the subscription.
    if (member.hubSlot < 0) return joined.draining === member ? joined.close(drain) : undefined;
    if (!joined.remove(member)) return;
    // The last member: the subscription leaves the group. What the server already sent goes to this member.
    joined.closing = true;
    joined.draining = member;
    if (this.hubs.get(joined.subject) === joined) this.hubs.delete(joined.subject);
    await joined.close(drain);
  }

  /** Subscriptions held now (tests and the scale figures). */
  get size(): number {
    return this.hubs.size;
  }
}

class QueueHub {
  private readonly members: QueueMember[] = [];
  sub: TransportSubscription | undefined;
  closing = false;
  /** The last member, while the subscription drains: what the server already sent is still its. */
  draining: QueueMember | undefined;
  private next = 0;

  constructor(
    readonly subject: string,
    private readonly refuse: (msg: TransportMessage) => void,
  ) {}

  dispatch(msg: TransportMessage): void {
    const n = this.members.length;
    for (let k = 0; k < n; k++) {
      const m = this.members[(this.next + k) % n] as QueueMember;
      if (!m.accepting) continue;
      this.next = (this.next + k + 1) % n;
      return m.deliver(msg);
    }
    if (this.draining) return this.draining.deliver(msg);
    // None accepts (starting, or stopping before it leaves the group): the server sent it here, and
    // a queue-group caller cannot re-route a refusal, so a member still joined handles it, as its
    // own queue subscription would have until it left the group.
    if (n > 0) return (this.members[this.next++ % n] as QueueMember).deliver(msg);
    this.refuse(msg);
  }

  add(member: QueueMember): void {
    member.hubSlot = this.members.length;
    this.members.push(member);
  }

  /** Removes a member; true when it was the last one. */
  remove(member: QueueMember): boolean {
    const i = member.hubSlot;
    if (i >= 0 && this.members[i] === member) {
      // Order does not matter for round-robin: the last member takes the free place.
      member.hubSlot = -1;
      const last = this.members.pop() as QueueMember;
      if (last !== member) {
        this.members[i] = last;
        last.hubSlot = i;
      }
    }
    return this.members.length === 0;
  }

  async close(drain: boolean): Promise<void> {
    const sub = this.sub;
    if (!sub || sub.closed) return;
    if (drain) await sub.drain();
    else sub.unsubscribe();
  }
}
