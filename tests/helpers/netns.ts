/**
 * Kernel scaffolding for tests — network namespaces, veth pairs, cgroups —
 * each owned by a disposable that removes it even when the test fails.
 * Names carry the test's pid so parallel runs do not collide.
 */

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stderr: "piped", stdout: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

export { run };

/** A veth pair on the host; removing one end removes both. */
export async function vethPair(
  name: string,
): Promise<{ host: string; peer: string } & AsyncDisposable> {
  const host = `${name}h`, peer = `${name}p`;
  await run("ip", ["link", "add", host, "type", "veth", "peer", "name", peer]);
  await run("ip", ["link", "set", host, "up"]);
  await run("ip", ["link", "set", peer, "up"]);
  return {
    host,
    peer,
    [Symbol.asyncDispose]: async () => {
      await run("ip", ["link", "del", host]).catch(() => {});
    },
  };
}

/** A cgroup v2 directory under the cgroup2 mount, removed on dispose. */
export async function cgroupDir(
  mount: string,
  name: string,
): Promise<{ path: string } & AsyncDisposable> {
  const path = `${mount}/${name}`;
  await Deno.mkdir(path);
  return {
    path,
    [Symbol.asyncDispose]: async () => {
      await Deno.remove(path).catch(() => {});
    },
  };
}
