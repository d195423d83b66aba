/** Holes in a connection's byte stream from the sequence numbers its records carry. */

import { StreamSeq } from "../probes/stream_seq.ts";
import { assertEquals } from "./helpers/assert.ts";

Deno.test("stream seq: calls that meet leave no hole; a lost one leaves its size, per direction", () => {
  const s = new StreamSeq();
  assertEquals(s.missing(1, 1100, 100), 0, "the first call: nothing before it is known");
  assertEquals(s.missing(1, 1300, 200), 0);
  assertEquals(s.missing(0, 5050, 50), 0, "the other direction has its own numbers");
  assertEquals(s.missing(1, 1700, 100), 300, "a call of 300 bytes went missing");
  assertEquals(s.missing(1, 1710, 10), 0);
  assertEquals(s.missing(0, 5060, 10), 0);
});

Deno.test("stream seq: numbers wrap at 2^32; unknown ones (0) and ones that go back are not holes", () => {
  const s = new StreamSeq();
  assertEquals(s.missing(0, 0xffffff00, 0x100), 0);
  assertEquals(s.missing(0, 0x80, 0x100), 0x80, "across the wrap: 0x80 bytes missing");
  assertEquals(s.missing(0, 0, 10), 0, "not known");
  // a redirected socket's sends move no write_seq: the numbers stop following the calls
  assertEquals(s.missing(1, 9000, 100), 0);
  assertEquals(s.missing(1, 9000, 100), 0, "backwards: numbers not followed from here");
  assertEquals(s.missing(1, 9500, 100), 0, "no hole is claimed after that");
});
