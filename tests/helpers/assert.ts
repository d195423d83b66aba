/** Minimal assertions (the standard library is not reachable from here). */

export function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new Error(message);
}

export function assertEquals<T>(actual: T, expected: T, message = ""): void {
  const a = JSON.stringify(actual, replacer), e = JSON.stringify(expected, replacer);
  if (a !== e) throw new Error(`${message ? message + ": " : ""}expected ${e}, got ${a}`);
}

function replacer(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? `${v}n` : v;
}
