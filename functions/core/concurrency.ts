/** Runs `work` over `inputs` with at most `limit` in flight; the first failure stops new work and is rethrown. */
export async function forEachLimited<T>(
  inputs: readonly T[],
  limit: number,
  work: (input: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async () => {
    while (!failed && next < inputs.length) {
      const index = next++;
      try {
        await work(inputs[index] as T, index);
      } catch (error) {
        if (!failed) firstError = error;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, inputs.length)) }, worker));
  if (failed) throw firstError;
}
