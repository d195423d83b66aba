/**
 * Trace context carried by requests, read from captured header values: W3C `traceparent`
 * (HTTP/1.x and HTTP/2) and gRPC's binary `grpc-trace-bin` (OpenCensus format, base64 in the
 * header), both given back as a traceparent string, and gRPC's `grpc-timeout` deadline.
 */

const DASH = 45;
/** Longer traceparent values are not kept: version 00 is 55 bytes, later ones may append. */
const TRACEPARENT_MAX = 512;
const ASCII = new TextDecoder();

const isDigit = (x: number) => x >= 48 && x <= 57;
const isLowerHex = (x: number) => isDigit(x) || (x >= 97 && x <= 102);

function hexRun(b: Uint8Array, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (!isLowerHex(b[i])) return false;
  return true;
}

function zeroRun(b: Uint8Array, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i] !== 48) return false;
  return true;
}

/** The value when it is a valid W3C traceparent (version-traceid-parentid-flags), else "". */
export function traceparent(b: Uint8Array, s: number, e: number): string {
  const n = e - s;
  if (n < 55 || n > TRACEPARENT_MAX) return "";
  if (b[s + 2] !== DASH || b[s + 35] !== DASH || b[s + 52] !== DASH) return "";
  if (!hexRun(b, s, s + 2) || !hexRun(b, s + 3, s + 35)) return "";
  if (!hexRun(b, s + 36, s + 52) || !hexRun(b, s + 53, s + 55)) return "";
  if (b[s] === 102 && b[s + 1] === 102) return ""; // version ff is forbidden
  // version 00 has exactly these fields; later versions may append "-..."
  if (n > 55 && ((b[s] === 48 && b[s + 1] === 48) || b[s + 55] !== DASH)) return "";
  if (zeroRun(b, s + 3, s + 35) || zeroRun(b, s + 36, s + 52)) return "";
  return ASCII.decode(b.subarray(s, e));
}

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join("");

/**
 * `grpc-trace-bin` (version 0: field 0 the 16-byte trace id, field 1 the 8-byte span id, field 2
 * the options byte) as a traceparent string; "" when it is not that or an id is all zero.
 */
export function grpcTraceBin(b: Uint8Array, s: number, e: number): string {
  if (e - s > 64) return "";
  let raw: Uint8Array;
  if (e > s && b[s] === 0) {
    // "true binary" metadata, which peers that both offer it send raw after a 0 byte
    raw = b.subarray(s + 1, e);
  } else {
    try {
      // else base64, padding optional (gRPC over HTTP/2, headers ending "-bin")
      const text = ASCII.decode(b.subarray(s, e)).replace(/=+$/, "");
      raw = Uint8Array.from(
        atob(text.padEnd(Math.ceil(text.length / 4) * 4, "=")),
        (c) => c.charCodeAt(0),
      );
    } catch {
      return "";
    }
  }
  if (raw.length < 29 || raw[0] !== 0 || raw[1] !== 0 || raw[18] !== 1) return "";
  const trace = raw.subarray(2, 18), span = raw.subarray(19, 27);
  if (trace.every((x) => x === 0) || span.every((x) => x === 0)) return "";
  const sampled = raw.length >= 29 && raw[27] === 2 ? raw[28] & 1 : 0;
  return `00-${hex(trace)}-${hex(span)}-0${sampled}`;
}

/** grpc-timeout units: Hour, Minute, Second (multiples of a second), milli, micro, nano. */
const TIMEOUT_PER_SECOND: Record<number, number> = {
  72: 1 / 3600,
  77: 1 / 60,
  83: 1,
  109: 1e3,
  117: 1e6,
  110: 1e9,
};

/** A `grpc-timeout` value (1 to 8 digits and a unit) in seconds; -1 when malformed. */
export function grpcTimeoutSeconds(b: Uint8Array, s: number, e: number): number {
  const n = e - s - 1;
  const perSecond = TIMEOUT_PER_SECOND[b[e - 1]];
  if (n < 1 || n > 8 || perSecond === undefined) return -1;
  let v = 0;
  for (let i = s; i < e - 1; i++) {
    if (!isDigit(b[i])) return -1;
    v = v * 10 + b[i] - 48;
  }
  // a division by the exact count per second keeps 100u at 1e-4 (a product would not)
  return perSecond < 1 ? v * Math.round(1 / perSecond) : v / perSecond;
}
