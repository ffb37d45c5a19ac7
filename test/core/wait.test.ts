import { waitFor } from '../../core/index.ts';

describe('waitFor', () => {
  test('returns the first truthy value of its check', async () => {
    let n = 0;
    await expect(waitFor(() => (++n >= 3 ? n : undefined), { intervalMs: 1 })).resolves.toBe(3);
  });

  test('names what it waited for when the deadline passes', async () => {
    await expect(waitFor(() => false, { timeoutMs: 30, intervalMs: 5, what: 'the moon' })).rejects.toThrow(
      /timed out after 30 ms waiting for the moon/,
    );
  });

  test('an aborted signal ends the wait with its reason, and the check is not called again', async () => {
    const stop = new AbortController();
    let calls = 0;
    const waiting = waitFor(
      () => {
        calls++;
        return false;
      },
      { timeoutMs: 7_200_000, intervalMs: 3_600_000, signal: stop.signal },
    );
    // the first check runs at once; the wait then sleeps an hour before the next: only the abort can end it
    // within the test's time limit
    await waitFor(() => calls === 1, { intervalMs: 1 });
    const reason = new Error('lost the race');
    stop.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    expect(calls).toBe(1);
  });

  test('a signal aborted before the wait starts ends it before any check', async () => {
    const stop = new AbortController();
    stop.abort(new Error('already over'));
    let calls = 0;
    await expect(
      waitFor(
        () => {
          calls++;
          return true;
        },
        { signal: stop.signal },
      ),
    ).rejects.toThrow('already over');
    expect(calls).toBe(0);
  });
});
