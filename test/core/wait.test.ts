import { endsWait, waitFor } from '../../core/index.ts';

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

  test("a check that throws is tried again; the last error is the timeout's cause", async () => {
    let calls = 0;
    const last = await waitFor(
      () => {
        calls++;
        throw new Error(`not yet ${calls}`);
      },
      { timeoutMs: 40, intervalMs: 1 },
    ).catch((err: Error) => err);
    expect(calls).toBeGreaterThan(1);
    expect(last).toBeInstanceOf(Error);
    expect((last as Error).message).toMatch(/timed out after 40 ms/);
    expect(((last as Error).cause as Error).message).toBe(`not yet ${calls}`);
  });

  test('an error marked with endsWait ends the wait at once with that error', async () => {
    let calls = 0;
    const gone = new Error('the process exited');
    expect(endsWait(gone)).toBe(gone);
    const waiting = waitFor(
      () => {
        calls++;
        if (calls === 2) throw gone;
        throw new Error('not yet');
      },
      // an hour of deadline: only the marked error can end the wait within the test's time limit
      { timeoutMs: 3_600_000, intervalMs: 1 },
    );
    await expect(waiting).rejects.toBe(gone);
    expect(calls).toBe(2);
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
