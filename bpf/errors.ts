/** Failures of BPF operations: the call, its errno, and what libbpf printed about it. */

import { KupodError } from "../cli/errors.ts";
import { errno, libbpf } from "./ffi.ts";
import { logMark, logSince } from "./log.ts";

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  95: "EOPNOTSUPP",
  524: "ENOTSUPP",
};

export class BpfError extends KupodError {
  /** Positive errno. */
  readonly errno: number;
  /** libbpf's messages printed during the failed call (verifier log included). */
  readonly libbpfLog: string[];
  constructor(operation: string, err: number, log: string[] = []) {
    const code = Math.abs(err);
    const buf = new Uint8Array(256);
    libbpf().libbpf_strerror(code, buf, BigInt(buf.length));
    const text = new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
    const name = ERRNO_NAMES[code] ?? `errno ${code}`;
    super(`${operation}: ${text || name} (${name})`);
    this.name = "BpfError";
    this.errno = code;
    this.libbpfLog = log;
  }
}

/** Runs a libbpf call returning a negative errno on failure; throws BpfError. */
export function check(operation: string, call: () => number): number {
  const mark = logMark();
  const rc = call();
  if (rc < 0) throw new BpfError(operation, rc, logSince(mark));
  return rc;
}

/** Runs a libbpf call returning a pointer, NULL + errno on failure; throws BpfError. */
export function checkPointer(
  operation: string,
  call: () => Deno.PointerValue,
): Deno.PointerObject {
  const mark = logMark();
  const p = call();
  if (!p) throw new BpfError(operation, errno() || 22, logSince(mark));
  return p;
}
