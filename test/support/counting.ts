/** A real port passed through, noting the name of each method called on it: to count store or catalog round trips. */
export function counting<T extends object>(port: T, calls: string[]): T {
  return new Proxy(port, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...args: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
