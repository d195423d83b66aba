/** Address text to the 16 bytes the stack probe's address selection keys on, and back. */

import { assertEquals } from "./helpers/assert.ts";
import { addrBytes, formatAddr } from "../probes/addr.ts";

Deno.test("addrBytes: IPv4 as ::ffff:a.b.c.d, IPv6 in every spelling", () => {
  const cases: [string, string][] = [
    ["10.213.0.2", "::ffff:10.213.0.2"],
    ["fd6b:7570:6f64:1a::2", "fd6b:7570:6f64:1a::2"],
    ["FD00:0:0:0:0:0:0:1", "fd00::1"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
  ];
  for (const [text, want] of cases) {
    const b = addrBytes(text);
    assertEquals(b && formatAddr(10, b), want, text);
  }
  assertEquals([...addrBytes("1.2.3.4")!.subarray(10)], [255, 255, 1, 2, 3, 4]);
});

Deno.test("addrBytes: anything else is not an address", () => {
  for (const bad of ["", "x", "1.2.3", "256.1.1.1", "1.2.3.4.5", "1:2:3", "1:2:3:4:5:6:7:8:9"]) {
    assertEquals(addrBytes(bad), undefined, bad);
  }
  for (const bad of ["a::b::c", "12345::", "1::2:3:4:5:6:7:8", "::g", "1.2.3.04x"]) {
    assertEquals(addrBytes(bad), undefined, bad);
  }
});
