/**
 * Network counters of a pod: the interfaces of the network namespace a process lives in, from
 * /proc/<pid>/net/dev (the kernel shows each reader the namespace of the process named in the
 * path, so no namespace switch is needed).
 */

/** Cumulative counters of one interface. */
export interface NetUsage {
  interface: string;
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

/**
 * Column of each counter after the "name:" of a line. Receive has 8 columns (bytes packets errs
 * drop fifo frame compressed multicast), transmit 8 more (bytes packets errs drop fifo colls
 * carrier compressed).
 */
const RX_BYTES = 0, RX_PACKETS = 1, RX_ERRS = 2, RX_DROP = 3;
const TX_BYTES = 8, TX_PACKETS = 9, TX_ERRS = 10, TX_DROP = 11;
const COLUMNS = 16;

/** Parses /proc/<pid>/net/dev text (the interfaces of that process's network namespace). */
export function parseNetDev(text: string): NetUsage[] {
  const out: NetUsage[] = [];
  for (const line of text.split("\n")) {
    // The two header lines have no colon; a name never has one (the kernel refuses it), and
    // old kernels print the first number right after it, so split there.
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const cols = numbers(line.slice(colon + 1));
    if (!name || cols.length < COLUMNS) continue;
    out.push({
      interface: name,
      rxBytes: cols[RX_BYTES],
      rxPackets: cols[RX_PACKETS],
      rxErrors: cols[RX_ERRS],
      rxDropped: cols[RX_DROP],
      txBytes: cols[TX_BYTES],
      txPackets: cols[TX_PACKETS],
      txErrors: cols[TX_ERRS],
      txDropped: cols[TX_DROP],
    });
  }
  return out;
}

/** The space-separated numbers of `s`. */
function numbers(s: string): number[] {
  const out: number[] = [];
  for (const f of s.split(" ")) if (f) out.push(Number(f));
  return out;
}

/**
 * The interfaces of the network namespace `pid` lives in, without "lo" unless
 * `includeLoopback`; [] when the process is gone.
 */
export function readNetUsage(
  pid: number,
  opts: { proc?: string; includeLoopback?: boolean } = {},
): NetUsage[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${opts.proc ?? "/proc"}/${pid}/net/dev`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return []; // exited (or exiting: no namespace left)
    throw e;
  }
  const all = parseNetDev(text);
  return opts.includeLoopback ? all : all.filter((n) => n.interface !== "lo");
}
