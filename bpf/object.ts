/**
 * A BPF object: opened from bytes, configured (rodata, autoload, map sizes,
 * program types), loaded, and closed by its owner. Programs attach through
 * BpfProgram, which returns an owner per attachment.
 */

import { BPF, LINK_CREATE_ATTR, OPEN_OPTS, UPROBE_OPTS } from "./abi.ts";
import { BpfError, check, checkPointer } from "./errors.ts";
import { cstr, errno, libbpf, libc, readCString } from "./ffi.ts";
import { FdLink, Link, ProgAttachment } from "./link.ts";
import { captureLibbpfLog } from "./log.ts";
import { BpfMap } from "./map.ts";
import { type TcDirection, type TcFilter, TcHook } from "./tc.ts";

/** Layout of one `const volatile` variable, as generated from the object's BTF. */
export interface RodataField {
  readonly offset: number;
  readonly size: number;
}
export type RodataValue = number | bigint | boolean;

const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

export class BpfObject implements Disposable {
  #ptr: Deno.PointerObject | null;
  #loaded = false;
  readonly name: string;
  // Kept alive for the object's lifetime: libbpf may refer to the buffers it was opened from.
  readonly #keep: Uint8Array[];

  private constructor(ptr: Deno.PointerObject, name: string, keep: Uint8Array[]) {
    this.#ptr = ptr;
    this.name = name;
    this.#keep = keep;
  }

  /** Opens an ELF object from its bytes; `name` prefixes the object's internal map names. */
  static open(bytes: Uint8Array<ArrayBuffer>, name: string): BpfObject {
    captureLibbpfLog();
    const objName = cstr(name);
    const opts = new Uint8Array(OPEN_OPTS.size);
    const v = new DataView(opts.buffer);
    v.setBigUint64(OPEN_OPTS.sz, BigInt(OPEN_OPTS.size), true);
    v.setBigUint64(
      OPEN_OPTS.object_name,
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(objName))),
      true,
    );
    const ptr = checkPointer(
      `open BPF object ${name}`,
      () => libbpf().bpf_object__open_mem(bytes, BigInt(bytes.length), opts),
    );
    return new BpfObject(ptr, name, [bytes, objName]);
  }

  get #object(): Deno.PointerObject {
    if (!this.#ptr) throw new Error(`BPF object ${this.name} is closed`);
    return this.#ptr;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  program(name: string): BpfProgram {
    const p = libbpf().bpf_object__find_program_by_name(this.#object, cstr(name));
    if (!p) throw new Error(`BPF object ${this.name} has no program ${name}`);
    return new BpfProgram(p, name);
  }

  programs(): BpfProgram[] {
    const out: BpfProgram[] = [];
    for (
      let p = libbpf().bpf_object__next_program(this.#object, null);
      p;
      p = libbpf().bpf_object__next_program(this.#object, p)
    ) {
      out.push(new BpfProgram(p, readCString(libbpf().bpf_program__name(p))));
    }
    return out;
  }

  #mapPtr(name: string): Deno.PointerObject {
    const p = libbpf().bpf_object__find_map_by_name(this.#object, cstr(name));
    if (!p) throw new Error(`BPF object ${this.name} has no map ${name}`);
    return p;
  }

  /** A map of the loaded object. */
  map(name: string): BpfMap {
    if (!this.#loaded) throw new Error(`BPF object ${this.name}: map ${name} used before load`);
    const p = this.#mapPtr(name);
    const lib = libbpf();
    return new BpfMap(
      name,
      lib.bpf_map__fd(p),
      lib.bpf_map__type(p),
      lib.bpf_map__key_size(p),
      lib.bpf_map__value_size(p),
      lib.bpf_map__max_entries(p),
    );
  }

  /** Resizes a map before load (ring buffers: a power of two multiple of the page size). */
  setMaxEntries(map: string, entries: number): void {
    this.#beforeLoad("resize map");
    check(
      `resize map ${map} to ${entries}`,
      () => libbpf().bpf_map__set_max_entries(this.#mapPtr(map), entries),
    );
  }

  /** Sets `const volatile` tunables before load, at offsets generated from the object's BTF. */
  setRodata(
    layout: Readonly<Record<string, RodataField>>,
    values: Readonly<Record<string, RodataValue>>,
  ): void {
    this.#beforeLoad("set rodata");
    const sizeBuf = new BigUint64Array(1);
    const p = libbpf().bpf_map__initial_value(this.#mapPtr(".rodata"), sizeBuf);
    if (!p) throw new Error(`BPF object ${this.name}: no .rodata to configure`);
    const size = Number(sizeBuf[0]);
    const view = new DataView(Deno.UnsafePointerView.getArrayBuffer(p, size));
    for (const [name, value] of Object.entries(values)) {
      const field = layout[name];
      if (!field) throw new Error(`BPF object ${this.name} has no tunable ${name}`);
      if (field.offset + field.size > size) throw new RangeError(`tunable ${name} out of .rodata`);
      const n = typeof value === "boolean" ? (value ? 1 : 0) : value;
      switch (field.size) {
        case 1:
          view.setUint8(field.offset, Number(n));
          break;
        case 2:
          view.setUint16(field.offset, Number(n), true);
          break;
        case 4:
          view.setUint32(field.offset, Number(n) >>> 0, true);
          break;
        case 8:
          view.setBigUint64(field.offset, BigInt(n), true);
          break;
        default:
          throw new RangeError(`tunable ${name}: unsupported size ${field.size}`);
      }
    }
  }

  /** Verifies and loads every program whose autoload is on, and creates the maps. */
  load(): void {
    this.#beforeLoad("load");
    check(`load BPF object ${this.name}`, () => libbpf().bpf_object__load(this.#object));
    this.#loaded = true;
    // libbpf parsed the kernel's BTF to relocate (tens of MB) and freed it: without a trim the
    // freed pages stay resident for the agent's life
    libc().malloc_trim(0n);
  }

  #beforeLoad(what: string): void {
    if (this.#loaded) throw new Error(`BPF object ${this.name}: cannot ${what} after load`);
  }

  /** Closes the object: programs and maps are released once no attachment holds them. */
  [Symbol.dispose](): void {
    if (!this.#ptr) return;
    libbpf().bpf_object__close(this.#ptr);
    this.#ptr = null;
    this.#keep.length = 0;
  }
}

/** One program of an object. Every attach returns the owner that undoes it. */
export class BpfProgram {
  constructor(readonly ptr: Deno.PointerObject, readonly name: string) {}

  get sectionName(): string {
    return readCString(libbpf().bpf_program__section_name(this.ptr));
  }

  get fd(): number {
    return libbpf().bpf_program__fd(this.ptr);
  }

  /** Before load: whether this program is loaded at all. */
  setAutoload(on: boolean): void {
    check(`autoload of ${this.name}`, () => libbpf().bpf_program__set_autoload(this.ptr, on));
  }

  /** Before load: program and expected attach type, for sections libbpf 1.1 does not know. */
  setType(progType: number, expectedAttachType?: number): void {
    check(`type of ${this.name}`, () => libbpf().bpf_program__set_type(this.ptr, progType));
    if (expectedAttachType !== undefined) {
      check(
        `attach type of ${this.name}`,
        () => libbpf().bpf_program__set_expected_attach_type(this.ptr, expectedAttachType),
      );
    }
  }

  /** Attaches by section name (tp/, tp_btf/, raw_tp/, ...). */
  attach(): Link {
    const what = `${this.sectionName} (${this.name})`;
    return new Link(
      checkPointer(`attach ${what}`, () => libbpf().bpf_program__attach(this.ptr)),
      what,
    );
  }

  attachTracepoint(category: string, event: string): Link {
    const what = `tracepoint ${category}/${event} (${this.name})`;
    const p = checkPointer(
      `attach ${what}`,
      () => libbpf().bpf_program__attach_tracepoint(this.ptr, cstr(category), cstr(event)),
    );
    return new Link(p, what);
  }

  attachRawTracepoint(event: string): Link {
    const what = `raw tracepoint ${event} (${this.name})`;
    const p = checkPointer(
      `attach ${what}`,
      () => libbpf().bpf_program__attach_raw_tracepoint(this.ptr, cstr(event)),
    );
    return new Link(p, what);
  }

  /**
   * Uprobe on `symbol` (or at `offset`) of `binary`; pid -1 = every process. `cookie` is what
   * bpf_get_attach_cookie() returns in the program.
   */
  attachUprobe(
    opts: {
      binary: string;
      symbol?: string;
      offset?: number;
      pid?: number;
      retprobe?: boolean;
      cookie?: bigint;
    },
  ): Link {
    const buf = new Uint8Array(UPROBE_OPTS.size);
    const v = new DataView(buf.buffer);
    v.setBigUint64(UPROBE_OPTS.sz, BigInt(UPROBE_OPTS.size), true);
    v.setUint8(UPROBE_OPTS.retprobe, opts.retprobe ? 1 : 0);
    v.setBigUint64(UPROBE_OPTS.bpf_cookie, opts.cookie ?? 0n, true);
    const symbol = opts.symbol ? cstr(opts.symbol) : null;
    if (symbol) {
      v.setBigUint64(
        UPROBE_OPTS.func_name,
        BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(symbol))),
        true,
      );
    }
    const where = `${opts.binary}:${opts.symbol ?? `0x${(opts.offset ?? 0).toString(16)}`}`;
    const what = `${opts.retprobe ? "uretprobe" : "uprobe"} ${where} (${this.name})`;
    const p = checkPointer(`attach ${what}`, () =>
      libbpf().bpf_program__attach_uprobe_opts(
        this.ptr,
        opts.pid ?? -1,
        cstr(opts.binary),
        BigInt(opts.offset ?? 0),
        buf,
      ));
    symbol?.fill(0); // keeps `symbol` alive until after the call
    return new Link(p, what);
  }

  /** Cgroup program (sockops, ...) on the cgroup v2 directory `path`. */
  attachCgroup(path: string): Link {
    const fd = libc().open(cstr(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw new BpfError(`open cgroup ${path}`, errno());
    try {
      const what = `cgroup ${path} (${this.name})`;
      return new Link(
        checkPointer(`attach ${what}`, () => libbpf().bpf_program__attach_cgroup(this.ptr, fd)),
        what,
      );
    } finally {
      libc().close(fd);
    }
  }

  /** sk_msg verdict program on a sockmap/sockhash (libbpf 1.1 has no link API for it). */
  attachSkMsg(map: BpfMap): ProgAttachment {
    const what = `sk_msg verdict on map ${map.name} (${this.name})`;
    check(
      `attach ${what}`,
      () => libbpf().bpf_prog_attach(this.fd, map.fd, BPF.ATTACH_SK_MSG_VERDICT, 0),
    );
    return new ProgAttachment(this.fd, map.fd, BPF.ATTACH_SK_MSG_VERDICT, what);
  }

  /** SEC("tc") program on a hook's ingress or egress. */
  attachTc(hook: TcHook, direction: TcDirection): TcFilter {
    return hook.attach(this.fd, direction, this.name);
  }

  /**
   * SEC("tc") program on an interface's ingress or egress as a tcx link (BPF_LINK_CREATE, Linux
   * 6.6+): owned by its fd, so it goes with the process however that ends (a netlink TC filter
   * outlives a SIGKILLed owner).
   */
  attachTcx(ifindex: number, direction: TcDirection): FdLink {
    const type = direction === "ingress" ? BPF.ATTACH_TCX_INGRESS : BPF.ATTACH_TCX_EGRESS;
    return this.#linkCreate(`tcx ${direction} of ifindex ${ifindex} (${this.name})`, (v) => {
      v.setUint32(LINK_CREATE_ATTR.target_fd, ifindex, true);
      v.setUint32(LINK_CREATE_ATTR.attach_type, type, true);
    });
  }

  /** BPF_LINK_CREATE for this program with the attributes `fill` sets. */
  #linkCreate(what: string, fill: (v: DataView) => void): FdLink {
    const attr = new Uint8Array(LINK_CREATE_ATTR.size);
    const v = new DataView(attr.buffer);
    v.setUint32(LINK_CREATE_ATTR.prog_fd, this.fd, true);
    fill(v);
    const nr = Deno.build.arch === "aarch64" ? BPF.SYS_BPF_ARM64 : BPF.SYS_BPF_X86_64;
    const fd = Number(
      libc().syscall(BigInt(nr), BigInt(BPF.CMD_LINK_CREATE), attr, BigInt(attr.length)),
    );
    if (fd < 0) throw new BpfError(`attach ${what}`, errno());
    return new FdLink(fd, what);
  }

  /** Netfilter program (BPF_PROG_TYPE_NETFILTER) at an IP-layer hook, via BPF_LINK_CREATE. */
  attachNetfilter(opts: { family: "ipv4" | "ipv6"; hook: number; priority: number }): FdLink {
    const what = `netfilter ${opts.family} hook ${opts.hook} prio ${opts.priority} (${this.name})`;
    return this.#linkCreate(what, (v) => {
      v.setUint32(LINK_CREATE_ATTR.attach_type, BPF.ATTACH_NETFILTER, true);
      v.setUint32(LINK_CREATE_ATTR.netfilter_pf, opts.family === "ipv4" ? 2 : 10, true);
      v.setUint32(LINK_CREATE_ATTR.netfilter_hooknum, opts.hook, true);
      v.setInt32(LINK_CREATE_ATTR.netfilter_priority, opts.priority, true);
    });
  }
}
