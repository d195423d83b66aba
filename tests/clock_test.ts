/** Kernel boot-clock timestamps as RFC 3339 wall-clock strings. */

import { bootNsToRfc3339, CLOCK_BOOTTIME, nowNs } from "../probes/clock.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const RFC3339_MICROS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

Deno.test("clock: now on the boot clock is now on the wall clock", () => {
  const ts = bootNsToRfc3339(nowNs(CLOCK_BOOTTIME));
  assert(RFC3339_MICROS.test(ts), ts);
  assert(Math.abs(Date.parse(ts) - Date.now()) < 1000, `${ts} vs ${new Date().toISOString()}`);
});

Deno.test("clock: microseconds and second boundaries are exact", () => {
  // micro-precision epoch of a formatted timestamp
  const micros = (s: string) => Date.parse(s.slice(0, 19) + "Z") * 1000 + Number(s.slice(20, 26));
  const start = nowNs(CLOCK_BOOTTIME);
  let prev = bootNsToRfc3339(start);
  const seconds = new Set<string>();
  // 1.5 s in 1 ms steps crosses at least one wall-clock second
  for (let i = 1; i <= 1500; i++) {
    const next = bootNsToRfc3339(start + BigInt(i) * 1_000_000n);
    assertEquals(micros(next) - micros(prev), 1000, `${prev} → ${next}`);
    seconds.add(next.slice(0, 19));
    prev = next;
  }
  assert(seconds.size >= 2, "crossed a second");
});
