/** The demo pod's service: a small HTTP server on the given port (default 8080). */

const port = Number(Deno.args[0] ?? 8080);
Deno.serve(
  { port, hostname: "0.0.0.0", onListen: () => console.log(`demo server on :${port}`) },
  (req) => new Response(`hello from the kupod demo pod: ${new URL(req.url).pathname}\n`),
);
