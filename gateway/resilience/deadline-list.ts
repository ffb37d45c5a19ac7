import { monotonicNow } from '../../core/index.ts';

/** An entry of a DeadlineList: the list links its entries through these fields (no node object per entry). */
export interface DeadlineEntry {
  /** when it is due, on the monotonic clock (monotonicNow) */
  due: number;
  prev: DeadlineEntry | undefined;
  next: DeadlineEntry | undefined;
  /** in the list, waiting for its time (false once removed, or once it fell due) */
  listed: boolean;
  /** removed by its owner: it fell due, but its try was over before the expiry ran */
  cancelled: boolean;
}

/**
 * Every pending deadline of one owner (the per-try timeout of one gateway) in one list, ordered by when
 * they are due, with one timer for the earliest: adding and removing an entry is a few pointer writes, where a
 * timer per try cost a Timeout object, a closure and a clearTimeout. Entries with the same timeout are added in
 * due order, so an add walks back from the tail by at most the entries of shorter timeouts.
 *
 * Entries that fall due get `expire` after one more turn of the event loop (setImmediate runs after the I/O
 * poll phase): after a stall (GC, a busy loop, a starved CPU) the timer phase runs before the poll phase, and
 * an answer that arrived in time but was not yet read must not be thrown away as a timeout. An entry its owner
 * removes meanwhile is not expired.
 */
export class DeadlineList<E extends DeadlineEntry> {
  #head: E | undefined;
  #tail: E | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** when the armed timer fires */
  #armedFor = Number.POSITIVE_INFINITY;
  readonly #expire: (e: E) => void;

  constructor(expire: (e: E) => void) {
    this.#expire = expire;
  }

  add(e: E, due: number): void {
    e.due = due;
    e.listed = true;
    e.cancelled = false;
    let after = this.#tail;
    while (after && after.due > due) after = after.prev as E | undefined;
    e.prev = after;
    e.next = after ? after.next : this.#head;
    if (e.next) e.next.prev = e;
    else this.#tail = e;
    if (after) after.next = e;
    else this.#head = e;
    if (due < this.#armedFor) this.#arm(due);
    else if (!e.prev && !e.next) this.#timer?.ref();
  }

  remove(e: E): void {
    e.cancelled = true;
    if (!e.listed) return;
    e.listed = false;
    if (e.prev) e.prev.next = e.next;
    else this.#head = e.next as E | undefined;
    if (e.next) e.next.prev = e.prev;
    else this.#tail = e.prev as E | undefined;
    e.prev = undefined;
    e.next = undefined;
    // an early timer finds nothing due and re-arms. An empty list keeps its timer, unreferenced (it keeps
    // no process alive): the next entry, due later with the same timeout, needs no new one, where a list
    // emptied by every call (calls that do not overlap) cost a clearTimeout and a setTimeout per call
    if (!this.#head) this.#timer?.unref();
  }

  #arm(due: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = due;
    this.#timer = setTimeout(this.#fire, Math.max(0, due - monotonicNow()));
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = monotonicNow();
    const due: E[] = [];
    for (let e = this.#head; e && e.due <= now; e = this.#head) {
      this.#head = e.next as E | undefined;
      if (this.#head) this.#head.prev = undefined;
      else this.#tail = undefined;
      e.next = undefined;
      e.listed = false;
      due.push(e);
    }
    if (this.#head) this.#arm(this.#head.due);
    if (due.length === 0) return;
    setImmediate(() => {
      for (const e of due) if (!e.cancelled) this.#expire(e);
    });
  };
}
