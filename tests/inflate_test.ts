import { deflateSync } from "node:zlib";
import { InflateError, inflateZlib } from "../probes/go/inflate.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

let seed = 11;
function rand(n: number): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n;
}

/** Inputs of the shapes deflate meets: runs, repeats near and far, text, noise. */
function sample(n: number): Uint8Array {
  const b = new Uint8Array(n);
  const words = ["runtime.", "google.golang.org/grpc", "\0\0\0\0", "DW_AT_name", "x"];
  for (let i = 0; i < n;) {
    const k = rand(4);
    if (k === 0) b[i++] = rand(256);
    else if (k === 1 && i > 40) {
      const d = 1 + rand(Math.min(i, 40000)), len = 3 + rand(300);
      for (let j = 0; j < len && i < n; j++, i++) b[i] = b[i - d];
    } else {
      for (const c of new TextEncoder().encode(words[rand(words.length)])) if (i < n) b[i++] = c;
    }
  }
  return b;
}

Deno.test("inflate: what node:zlib deflates, at every level, stored, fixed and dynamic blocks", () => {
  for (const n of [0, 1, 2, 100, 5000, 70_000, 300_000]) {
    for (const level of [0, 1, 6, 9]) {
      const input = sample(n);
      const z = deflateSync(input, { level });
      assertEquals(inflateZlib(new Uint8Array(z), n), input, `${n} bytes, level ${level}`);
    }
  }
});

Deno.test("inflate: damaged or truncated streams and wrong sizes are errors, never a hang", () => {
  const input = sample(20_000);
  const z = new Uint8Array(deflateSync(input));
  const fails = (data: Uint8Array, size: number) => {
    try {
      const out = inflateZlib(data, size);
      // a flipped bit can still decode; then the bytes differ
      return out.length !== input.length || out.some((b, i) => b !== input[i]);
    } catch (e) {
      assert(e instanceof InflateError, String(e));
      return true;
    }
  };
  assert(fails(z.subarray(0, z.length >> 1), input.length), "truncated");
  assert(fails(z, input.length - 1), "shorter than it inflates to");
  assert(fails(z, input.length + 1), "longer than it inflates to");
  assert(fails(new Uint8Array([0x78, 0x9c, 0xff, 0xff]), 10), "garbage");
  assert(fails(new Uint8Array([1, 2, 3]), 3), "not zlib");
  for (let i = 0; i < 200; i++) {
    const bad = z.slice();
    bad[2 + rand(bad.length - 2)] ^= 1 << rand(8);
    fails(bad, input.length); // any outcome but an exception other than InflateError
  }
});
