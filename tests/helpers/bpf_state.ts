/** What kupod may leave in the kernel, read with bpftool so the check does not trust kupod's code. */

export async function bpftoolJson(args: string[]): Promise<unknown> {
  // a listing fails now and then when an object it walks is freed under it (another run ending):
  // asked again, it answers
  for (let attempt = 1;; attempt++) {
    const out = await new Deno.Command("bpftool", { args: ["-j", ...args] }).output();
    if (out.success) return JSON.parse(new TextDecoder().decode(out.stdout).trim() || "[]");
    if (attempt === 3) {
      throw new Error(`bpftool ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Names of loaded BPF programs that are kupod's (all are named kupod_*). */
export async function kupodPrograms(): Promise<string[]> {
  const progs = await bpftoolJson(["prog", "show"]) as { name?: string }[];
  return progs.map((p) => p.name ?? "").filter((n) => n.startsWith("kupod_"));
}

/** Names of BPF links whose program is kupod's. */
export async function kupodLinks(): Promise<number[]> {
  const progs = await bpftoolJson(["prog", "show"]) as { id: number; name?: string }[];
  const ids = new Set(progs.filter((p) => p.name?.startsWith("kupod_")).map((p) => p.id));
  const links = await bpftoolJson(["link", "show"]) as { id: number; prog_id: number }[];
  return links.filter((l) => ids.has(l.prog_id)).map((l) => l.id);
}

/** Waits until the kernel has released kupod's programs (freeing is asynchronous after exit). */
export async function waitNoKupodPrograms(ms = 5000): Promise<string[]> {
  const until = Date.now() + ms;
  let left = await kupodPrograms();
  while (left.length && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    left = await kupodPrograms();
  }
  return left;
}
