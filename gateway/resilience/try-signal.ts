/**
 * What tells a try to stop: the part of AbortSignal that the resilience layers and the codecs use. An
 * AbortSignal is one; the per-try timeout hands out a TryAbort, which costs one small object instead of an
 * AbortController, its AbortSignal (an EventTarget) and a timer per try.
 */
export interface TrySignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * A TrySignal its owner aborts once. Listeners run once, in the order they were added (as an AbortSignal's
 * 'abort' listeners added with `once`); one added after the abort is not called, as with an AbortSignal.
 */
export class TryAbort implements TrySignal {
  aborted = false;
  reason: unknown;
  #listeners: (() => void)[] | undefined;
  /** the caller's own signal this one follows, and how */
  #parent: TrySignal | undefined;
  #onParent: (() => void) | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return;
    if (this.#listeners) this.#listeners.push(listener);
    else this.#listeners = [listener];
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.#listeners;
    if (!l) return;
    const i = l.indexOf(listener);
    if (i !== -1) l.splice(i, 1);
  }

  /** aborts this one too when `parent` aborts (what AbortSignal.any does), until release() */
  follow(parent: TrySignal): void {
    if (parent.aborted) {
      this.abort(parent.reason);
      return;
    }
    this.#parent = parent;
    this.#onParent = () => this.abort(parent.reason);
    parent.addEventListener('abort', this.#onParent, { once: true });
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.#unfollow();
    const l = this.#listeners;
    this.#listeners = undefined;
    if (l) for (const fn of l) fn();
  }

  /** the try is over: stop following the parent (nothing else holds on to this one) */
  release(): void {
    this.#unfollow();
    this.#listeners = undefined;
  }

  #unfollow(): void {
    if (this.#parent && this.#onParent) this.#parent.removeEventListener('abort', this.#onParent);
    this.#parent = undefined;
    this.#onParent = undefined;
  }
}

/** The signal of a call nobody can abort: listeners are never kept. */
export const NEVER_ABORTED: TrySignal = {
  aborted: false,
  reason: undefined,
  addEventListener: () => undefined,
  removeEventListener: () => undefined,
};
