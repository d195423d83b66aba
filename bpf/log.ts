/**
 * libbpf's own messages. libbpf prints through a callback with a va_list;
 * libc's vsnprintf formats it. Warnings are kept so that a failed call can
 * report what libbpf said about it (verifier log included); with a debug
 * sink installed every line is forwarded as well.
 */

import { libbpf, libc } from "./ffi.ts";

export type LibbpfLevel = "warn" | "info" | "debug";
const LEVELS: LibbpfLevel[] = ["warn", "info", "debug"];

const KEEP = 200;
const lines: string[] = [];
let sequence = 0;
let sink: ((level: LibbpfLevel, line: string) => void) | undefined;
// int (*libbpf_print_fn_t)(enum libbpf_print_level, const char *fmt, va_list ap)
const PRINT_FN = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;
let callback: Deno.UnsafeCallback<typeof PRINT_FN> | undefined;
const buffer = new Uint8Array(8192);
const decoder = new TextDecoder();
/**
 * Bytes of the va_list the callback receives a pointer to (x86-64: a 24-byte register save
 * descriptor; arm64: a 32-byte struct passed by reference). Copying them is va_copy: a message
 * longer than the buffer (a verifier log is one message, its reason at the end) is formatted
 * again from the copy into a buffer of its length.
 */
const VA_LIST_BYTES = Deno.build.arch === "x86_64" ? 24 : 32;

function format(fmt: Deno.PointerValue, args: Deno.PointerValue): string {
  const copy = new Uint8Array(VA_LIST_BYTES);
  if (args) copy.set(new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(args, VA_LIST_BYTES)));
  const n = libc().vsnprintf(buffer, BigInt(buffer.length), fmt, args);
  if (n < buffer.length || !args) {
    return decoder.decode(buffer.subarray(0, Math.min(Math.max(n, 0), buffer.length - 1)));
  }
  const whole = new Uint8Array(n + 1);
  const m = libc().vsnprintf(whole, BigInt(whole.length), fmt, Deno.UnsafePointer.of(copy));
  return decoder.decode(whole.subarray(0, Math.min(Math.max(m, 0), n)));
}

/** Installs the print callback once; later calls only change the sink. */
export function captureLibbpfLog(forward?: (level: LibbpfLevel, line: string) => void): void {
  sink = forward;
  if (callback) return;
  const cb = new Deno.UnsafeCallback(
    PRINT_FN,
    (level, fmt, args) => {
      const text = format(fmt, args);
      const name = LEVELS[level] ?? "debug";
      for (const line of text.split("\n")) {
        if (!line) continue;
        if (name !== "debug") {
          lines.push(line);
          sequence++;
          if (lines.length > KEEP) lines.shift();
        }
        sink?.(name, line);
      }
      return 0;
    },
  );
  callback = cb;
  libbpf().libbpf_set_print(cb.pointer);
}

/** A position in the message stream, to collect what one call printed. */
export function logMark(): number {
  return sequence;
}

/** Warning/info lines printed since `mark` (at most the last KEEP). */
export function logSince(mark: number): string[] {
  const count = Math.min(sequence - mark, lines.length);
  return count > 0 ? lines.slice(lines.length - count) : [];
}
