/** Trace context and deadlines read from header values: W3C traceparent, grpc-trace-bin, grpc-timeout. */

import { assertEquals } from "./helpers/assert.ts";
import { grpcTimeoutSeconds, grpcTraceBin, traceparent } from "../probes/trace_context.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const all = <T>(f: (b: Uint8Array, s: number, e: number) => T, b: Uint8Array) => f(b, 0, b.length);

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736", SPAN = "00f067aa0ba902b7";
const hexBytes = (h: string) => Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
/** Version 0: field 0 the trace id, field 1 the span id, field 2 the options (sampled). */
const BIN = Uint8Array.from([0, 0, ...hexBytes(TRACE), 1, ...hexBytes(SPAN), 2, 1]);

Deno.test("trace context: W3C traceparent, valid and not", () => {
  const tp = `00-${TRACE}-${SPAN}-01`;
  assertEquals(all(traceparent, bytes(tp)), tp);
  assertEquals(all(traceparent, bytes(tp.toUpperCase())), "", "upper-case hex");
  assertEquals(all(traceparent, bytes(`00-${"0".repeat(32)}-${SPAN}-01`)), "", "zero trace id");
  assertEquals(all(traceparent, bytes(`ff-${TRACE}-${SPAN}-01`)), "", "version ff");
  assertEquals(all(traceparent, bytes(`${tp}-x`)), "", "version 00 with more fields");
  assertEquals(all(traceparent, bytes(`01-${TRACE}-${SPAN}-01-x`)), `01-${TRACE}-${SPAN}-01-x`);
});

Deno.test("trace context: grpc-trace-bin, base64 (padded or not) and true binary", () => {
  const want = `00-${TRACE}-${SPAN}-01`;
  const b64 = btoa(String.fromCharCode(...BIN));
  assertEquals(all(grpcTraceBin, bytes(b64)), want);
  assertEquals(all(grpcTraceBin, bytes(b64.replace(/=+$/, ""))), want);
  assertEquals(all(grpcTraceBin, Uint8Array.from([0, ...BIN])), want, "true binary");
  assertEquals(all(grpcTraceBin, bytes("not base64!")), "");
  assertEquals(all(grpcTraceBin, Uint8Array.from([0, 1, ...BIN.subarray(1)])), "", "version 1");
  const zero = BIN.slice();
  zero.fill(0, 2, 18);
  assertEquals(all(grpcTraceBin, Uint8Array.from([0, ...zero])), "", "zero trace id");
  const unsampled = BIN.slice();
  unsampled[28] = 0;
  assertEquals(all(grpcTraceBin, Uint8Array.from([0, ...unsampled])), `00-${TRACE}-${SPAN}-00`);
});

Deno.test("trace context: grpc-timeout in every unit, malformed ones refused", () => {
  const t = (s: string) => all(grpcTimeoutSeconds, bytes(s));
  assertEquals([t("2H"), t("3M"), t("5S"), t("250m"), t("100u"), t("7n")], [
    7200,
    180,
    5,
    0.25,
    1e-4,
    7e-9,
  ]);
  assertEquals([t(""), t("S"), t("123456789S"), t("5s"), t("1.5S"), t("-1S")], [
    -1,
    -1,
    -1,
    -1,
    -1,
    -1,
  ]);
});
