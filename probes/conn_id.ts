/** Connection ids of the `conn_id` field, the same for a socket in every probe of a run. */

/** Kernel addresses are not shown: connection ids are socket addresses masked with a per-run key. */
const RUN_KEY = new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0);

/** The id of the connection whose kernel socket is at `sockId`. */
export function connId(sockId: bigint): string {
  return (sockId ^ RUN_KEY).toString(16).padStart(16, "0");
}
