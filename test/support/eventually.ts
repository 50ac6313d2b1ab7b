/** Waiting on a condition rather than for a guessed time. */

/** Retries `assertion` until it passes; its last failure once `timeoutMs` has gone by. */
export async function eventually<T>(assertion: () => T | Promise<T>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
