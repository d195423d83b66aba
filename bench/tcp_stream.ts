/**
 * A bulk TCP stream, the stack bench's second load:
 *
 *   tcp_stream.ts sink <port>
 *     listens on 0.0.0.0:<port> (the bench starts it inside the pod's netns), reads every
 *     connection to its end, discards the bytes and closes; prints "listening <port>" when ready;
 *   tcp_stream.ts send <host> <port> <seconds> <streams>
 *     opens <streams> connections and writes as fast as TCP takes for <seconds>, then
 *     half-closes each and waits for the sink to close it, i.e. until the sink has read every
 *     byte; prints {"bytes": N, "seconds": S}, S from before the first connect to the last close.
 */

const CHUNK = 256 * 1024;

async function drain(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  try {
    while ((await conn.read(buf)) !== null) {
      // discarded
    }
  } catch {
    // reset by the sender: that stream is over
  } finally {
    conn.close();
  }
}

async function sink(port: number): Promise<void> {
  const listener = Deno.listen({ hostname: "0.0.0.0", port });
  console.log(`listening ${port}`);
  for await (const conn of listener) drain(conn);
}

async function stream(hostname: string, port: number, end: number): Promise<number> {
  const conn = await Deno.connect({ hostname, port });
  const buf = new Uint8Array(CHUNK);
  let bytes = 0;
  while (performance.now() < end) bytes += await conn.write(buf);
  await conn.closeWrite();
  // the sink closes once it has read everything: the stream's bytes have all arrived
  while ((await conn.read(buf)) !== null) {
    // the sink sends nothing
  }
  conn.close();
  return bytes;
}

async function send(hostname: string, port: number, seconds: number, streams: number) {
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const counts = await Promise.all(
    Array.from({ length: streams }, () => stream(hostname, port, end)),
  );
  const bytes = counts.reduce((a, n) => a + n, 0);
  console.log(JSON.stringify({ bytes, seconds: (performance.now() - t0) / 1000 }));
}

const [role, ...args] = Deno.args;
if (role === "sink" && args.length === 1) {
  await sink(Number(args[0]));
} else if (role === "send" && args.length === 4) {
  await send(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
} else {
  console.error("usage: tcp_stream.ts sink <port> | send <host> <port> <seconds> <streams>");
  Deno.exit(2);
}
