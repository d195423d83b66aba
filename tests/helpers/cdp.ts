/**
 * Debian's headless Chromium driven over the DevTools protocol: started with a fresh profile and
 * no network of its own, one page attached, console errors and exceptions collected, scripts
 * evaluated, screenshots taken. Dispose ends the browser (by pid) and removes its profile.
 */

import { freePort } from "./process.ts";

const CHROMIUM = "/usr/bin/chromium";

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

export class Browser implements AsyncDisposable {
  /** Console errors, uncaught exceptions and failed loads the page reported. */
  readonly errors: string[] = [];
  #ws!: WebSocket;
  #next = 1;
  #pending = new Map<number, { resolve(r: CdpMessage): void; reject(e: Error): void }>();
  #loads: (() => void)[] = [];

  private constructor(
    readonly process: Deno.ChildProcess,
    readonly profile: string,
  ) {}

  /** Starts Chromium headless and attaches to its first page (about:blank). */
  static async launch(): Promise<Browser> {
    const profile = await Deno.makeTempDir({ prefix: "kupod-chromium-" });
    const port = freePort();
    const process = new Deno.Command(CHROMIUM, {
      args: [
        "--headless",
        "--no-sandbox", // root: Chromium's sandbox refuses to run as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        // nothing but the page: this machine's network is closed
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        `--user-data-dir=${profile}`,
        `--remote-debugging-port=${port}`,
        "--window-size=1400,1100",
        "about:blank",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const browser = new Browser(process, profile);
    try {
      const page = await browser.#pageTarget(port);
      await browser.#connect(page);
      await browser.send("Runtime.enable");
      await browser.send("Log.enable");
      await browser.send("Page.enable");
      return browser;
    } catch (e) {
      await browser[Symbol.asyncDispose]();
      throw e;
    }
  }

  /** The page's DevTools WebSocket, once the browser answers on its port. */
  async #pageTarget(port: number): Promise<string> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as {
          type: string;
          webSocketDebuggerUrl: string;
        }[];
        const page = list.find((t) => t.type === "page");
        if (page) return page.webSocketDebuggerUrl;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("chromium did not open its DevTools port within 20 s");
  }

  #connect(url: string): Promise<void> {
    this.#ws = new WebSocket(url);
    this.#ws.onmessage = (m) => this.#receive(JSON.parse(m.data));
    return new Promise((resolve, reject) => {
      this.#ws.onopen = () => resolve();
      this.#ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
  }

  #receive(m: CdpMessage): void {
    if (m.id !== undefined) {
      const waiter = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.error) waiter?.reject(new Error(m.error.message));
      else waiter?.resolve(m);
      return;
    }
    const p = m.params ?? {};
    switch (m.method) {
      case "Runtime.consoleAPICalled":
        if (p.type === "error" || p.type === "assert") {
          const args = p.args as { value?: unknown; description?: string }[];
          this.errors.push(
            `console.${p.type}: ${args.map((a) => a.value ?? a.description).join(" ")}`,
          );
        }
        return;
      case "Runtime.exceptionThrown": {
        const d = p.exceptionDetails as { text: string; exception?: { description?: string } };
        this.errors.push(`exception: ${d.exception?.description ?? d.text}`);
        return;
      }
      case "Log.entryAdded": {
        const entry = p.entry as { level: string; text: string; url?: string };
        if (entry.level === "error") this.errors.push(`log: ${entry.text} ${entry.url ?? ""}`);
        return;
      }
      case "Page.loadEventFired":
        for (const done of this.#loads.splice(0)) done();
        return;
    }
  }

  /** One DevTools command and its result. */
  send(method: string, params: Record<string, unknown> = {}): Promise<CdpMessage> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Opens `url` and waits for its load event. */
  async navigate(url: string): Promise<void> {
    const loaded = new Promise<void>((r) => this.#loads.push(r));
    const r = await this.send("Page.navigate", { url });
    if (r.result?.errorText) throw new Error(`navigating to ${url}: ${r.result.errorText}`);
    await loaded;
  }

  /** The value of `expression` evaluated in the page (promises awaited, JSON-serialisable). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    });
    const result = r.result as {
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (result.exceptionDetails) {
      const d = result.exceptionDetails;
      throw new Error(`evaluating ${expression}: ${d.exception?.description ?? d.text}`);
    }
    return result.result.value as T;
  }

  /** A PNG of the whole page. */
  async screenshot(): Promise<Uint8Array> {
    const r = await this.send("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
    });
    const data = atob(r.result!.data as string);
    return Uint8Array.from(data, (c) => c.charCodeAt(0));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#ws?.close();
    } catch { /* already closed */ }
    // SIGTERM lets the browser end its renderers; SIGKILL if it does not within 5 s
    const kill = (signal: Deno.Signal) => {
      try {
        this.process.kill(signal);
      } catch { /* already ended */ }
    };
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 5000);
    await this.process.status;
    clearTimeout(timer);
    await Deno.remove(this.profile, { recursive: true }).catch(() => {});
  }
}
