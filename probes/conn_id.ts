/** Connection ids of the `conn_id` field, the same for a socket in every probe of a run. */

/** Kernel addresses are not shown: connection ids are socket addresses masked with a per-run key. */
const RUN_KEY = new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0);

/** The id of the connection whose kernel socket is at `sockId`. */
export function connId(sockId: bigint): string {
  return (sockId ^ RUN_KEY).toString(16).padStart(16, "0");
}

/**
 * A record's sock_id (a kernel socket's address) as a Map key without a BigInt per record: its
 * low 53 bits, exact in a number. Sockets live in one kernel address range far smaller than
 * 2^53 bytes, so two live sockets never share them.
 */
export function sockKey(view: DataView, at: number): number {
  return (view.getUint32(at + 4, true) & 0x1fffff) * 2 ** 32 + view.getUint32(at, true);
}

/** sockKey() of a sock_id already read. */
export function sockKeyOf(sockId: bigint): number {
  return Number(sockId & 0x1fffffffffffffn);
}
