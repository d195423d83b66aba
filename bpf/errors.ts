/** Failures of BPF operations: the call, its errno, and what libbpf printed about it. */

import { KupodError } from "../base/errors.ts";
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
    const reason = verifierReason(log);
    super(`${operation}: ${text || name} (${name})${reason ? `: ${reason}` : ""}`);
    this.name = "BpfError";
    this.errno = code;
    this.libbpfLog = log;
  }
}

const VERIFIER_TRAILER = /^(verification time|stack depth|processed \d+ insns)/;

/**
 * Why the verifier rejected a program, from libbpf's messages: the last line of the verifier's
 * log before its statistics, named by program ("program p: R1 invalid mem access 'scalar'");
 * undefined when no verifier log was printed.
 */
export function verifierReason(log: readonly string[]): string | undefined {
  const end = log.findLastIndex((l) => l.includes("-- END PROG LOAD LOG --"));
  if (end < 0) return undefined;
  let begin = end - 1;
  while (begin >= 0 && !log[begin].includes("-- BEGIN PROG LOAD LOG --")) begin--;
  // the log may have lost its start (only the last lines are kept): libbpf names the program
  // again when it reports the failure
  const named = [log[begin] ?? "", ...log.slice(end + 1)].map((l) => l.match(/prog '([^']+)'/));
  const prog = named.find((m) => m)?.[1];
  for (let i = end; i > begin; i--) {
    const line = log[i].replace("-- END PROG LOAD LOG --", "").trim();
    if (!line || VERIFIER_TRAILER.test(line)) continue;
    return prog ? `program ${prog}: ${line}` : line;
  }
  return undefined;
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
