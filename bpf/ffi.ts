/**
 * The C symbols kupod calls: libbpf.so.1 (1.1 API) and a few libc functions.
 * One table per library, C prototypes as comments; everything else in bpf/
 * goes through the typed wrappers, never through these tables directly.
 */

import { KupodError } from "../base/errors.ts";

export const LIBBPF_SYMBOLS = {
  // void libbpf_set_print(libbpf_print_fn_t fn)
  libbpf_set_print: { parameters: ["function"], result: "pointer" },
  // int libbpf_strerror(int err, char *buf, size_t size)
  libbpf_strerror: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // const char *libbpf_version_string(void)
  libbpf_version_string: { parameters: [], result: "pointer" },
  // int libbpf_num_possible_cpus(void)
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  // int libbpf_probe_bpf_prog_type(enum bpf_prog_type, const void *opts)
  libbpf_probe_bpf_prog_type: { parameters: ["u32", "pointer"], result: "i32" },
  // int libbpf_probe_bpf_map_type(enum bpf_map_type, const void *opts)
  libbpf_probe_bpf_map_type: { parameters: ["u32", "pointer"], result: "i32" },
  // struct bpf_object *bpf_object__open_mem(const void *buf, size_t sz, const struct bpf_object_open_opts *)
  bpf_object__open_mem: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },
  // int bpf_object__load(struct bpf_object *)
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  // void bpf_object__close(struct bpf_object *)
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  // struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *, const char *)
  bpf_object__find_program_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  // struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *, const char *)
  bpf_object__find_map_by_name: { parameters: ["pointer", "buffer"], result: "pointer" },
  // struct bpf_program *bpf_object__next_program(const struct bpf_object *, struct bpf_program *)
  bpf_object__next_program: { parameters: ["pointer", "pointer"], result: "pointer" },
  // struct bpf_map *bpf_object__next_map(const struct bpf_object *, const struct bpf_map *)
  bpf_object__next_map: { parameters: ["pointer", "pointer"], result: "pointer" },
  // const char *bpf_program__name(const struct bpf_program *)
  bpf_program__name: { parameters: ["pointer"], result: "pointer" },
  // const char *bpf_program__section_name(const struct bpf_program *)
  bpf_program__section_name: { parameters: ["pointer"], result: "pointer" },
  // int bpf_program__set_autoload(struct bpf_program *, bool)
  bpf_program__set_autoload: { parameters: ["pointer", "bool"], result: "i32" },
  // int bpf_program__set_type(struct bpf_program *, enum bpf_prog_type)
  bpf_program__set_type: { parameters: ["pointer", "u32"], result: "i32" },
  // int bpf_program__set_expected_attach_type(struct bpf_program *, enum bpf_attach_type)
  bpf_program__set_expected_attach_type: { parameters: ["pointer", "u32"], result: "i32" },
  // int bpf_program__fd(const struct bpf_program *)
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  // struct bpf_link *bpf_program__attach(const struct bpf_program *)
  bpf_program__attach: { parameters: ["pointer"], result: "pointer" },
  // struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *, const char *cat, const char *name)
  bpf_program__attach_tracepoint: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "pointer",
  },
  // struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *, const char *name)
  bpf_program__attach_raw_tracepoint: { parameters: ["pointer", "buffer"], result: "pointer" },
  // struct bpf_link *bpf_program__attach_uprobe_opts(const struct bpf_program *, pid_t,
  //   const char *binary_path, size_t func_offset, const struct bpf_uprobe_opts *)
  bpf_program__attach_uprobe_opts: {
    parameters: ["pointer", "i32", "buffer", "usize", "buffer"],
    result: "pointer",
  },
  // struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *, int cgroup_fd)
  bpf_program__attach_cgroup: { parameters: ["pointer", "i32"], result: "pointer" },
  // int bpf_link__destroy(struct bpf_link *)
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  // int bpf_link__fd(const struct bpf_link *)
  bpf_link__fd: { parameters: ["pointer"], result: "i32" },
  // const char *bpf_map__name(const struct bpf_map *)
  bpf_map__name: { parameters: ["pointer"], result: "pointer" },
  // int bpf_map__fd(const struct bpf_map *)
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  // enum bpf_map_type bpf_map__type(const struct bpf_map *)
  bpf_map__type: { parameters: ["pointer"], result: "u32" },
  // __u32 bpf_map__key_size / value_size / max_entries(const struct bpf_map *)
  bpf_map__key_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__value_size: { parameters: ["pointer"], result: "u32" },
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" },
  // int bpf_map__set_max_entries(struct bpf_map *, __u32)
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  // const void *bpf_map__initial_value(struct bpf_map *, size_t *psize)
  bpf_map__initial_value: { parameters: ["pointer", "buffer"], result: "pointer" },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value)
  bpf_map_lookup_elem: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
  bpf_map_update_elem: { parameters: ["i32", "buffer", "buffer", "u64"], result: "i32" },
  // int bpf_map_delete_elem(int fd, const void *key)
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  // int bpf_map_get_next_key(int fd, const void *key /* NULL: first */, void *next_key)
  bpf_map_get_next_key: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_prog_attach(int prog_fd, int attachable_fd, enum bpf_attach_type, unsigned int flags)
  bpf_prog_attach: { parameters: ["i32", "i32", "u32", "u32"], result: "i32" },
  // int bpf_prog_detach2(int prog_fd, int attachable_fd, enum bpf_attach_type)
  bpf_prog_detach2: { parameters: ["i32", "i32", "u32"], result: "i32" },
  // int bpf_tc_hook_create(struct bpf_tc_hook *) / bpf_tc_hook_destroy
  bpf_tc_hook_create: { parameters: ["buffer"], result: "i32" },
  bpf_tc_hook_destroy: { parameters: ["buffer"], result: "i32" },
  // int bpf_tc_attach(const struct bpf_tc_hook *, struct bpf_tc_opts *) / bpf_tc_detach
  bpf_tc_attach: { parameters: ["buffer", "buffer"], result: "i32" },
  bpf_tc_detach: { parameters: ["buffer", "buffer"], result: "i32" },
  // int bpf_prog_get_next_id(__u32 start_id, __u32 *next_id)
  bpf_prog_get_next_id: { parameters: ["u32", "buffer"], result: "i32" },
  // int bpf_prog_get_fd_by_id(__u32 id)
  bpf_prog_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  // int bpf_obj_get_info_by_fd(int fd, void *info, __u32 *info_len)
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export const LIBC_SYMBOLS = {
  // int *__errno_location(void)
  __errno_location: { parameters: [], result: "pointer" },
  // int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "pointer"], result: "i32" },
  // void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  // int munmap(void *addr, size_t len)
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int epoll_create1(int flags)
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout_ms,
  //   const sigset_t *mask), on a worker thread with every signal blocked while it waits
  epoll_pwait: {
    parameters: ["i32", "buffer", "i32", "i32", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  // int eventfd(unsigned int initval, int flags)
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t n)
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int open(const char *path, int flags)
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const void *data)
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "pointer"], result: "i32" },
  // int close(int fd)
  close: { parameters: ["i32"], result: "i32" },
  // int setns(int fd, int nstype): moves the calling thread (netfilter links attach in its netns)
  setns: { parameters: ["i32", "i32"], result: "i32" },
  // unsigned int if_nametoindex(const char *name)
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  // long syscall(long nr, ...): used for BPF commands libbpf 1.1 does not wrap
  syscall: { parameters: ["i64", "i64", "buffer", "u64"], result: "i64" },
  // int clock_gettime(clockid_t clock, struct timespec *ts)
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // long sysconf(int name)
  sysconf: { parameters: ["i32"], result: "i64" },
  // int malloc_trim(size_t pad): gives the freed heap back to the system
  malloc_trim: { parameters: ["usize"], result: "i32" },
  // pid_t getppid(void): drives the load generator object in tests and bench
  getppid: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Where libbpf.so.1 is looked for: $KUPOD_LIBBPF, the loader's search path, then common dirs. */
const LIBBPF_CANDIDATES = [
  "libbpf.so.1",
  "/usr/lib/x86_64-linux-gnu/libbpf.so.1",
  "/usr/lib/aarch64-linux-gnu/libbpf.so.1",
  "/usr/lib64/libbpf.so.1",
  "/usr/lib/libbpf.so.1",
];

let libbpfLib: Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS> | undefined;
let libbpfPath = "";
let libcLib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> | undefined;

/** libbpf's symbols; opened on first use. */
export function libbpf(): Deno.DynamicLibrary<typeof LIBBPF_SYMBOLS>["symbols"] {
  if (!libbpfLib) {
    const override = Deno.env.get("KUPOD_LIBBPF");
    const candidates = override ? [override] : LIBBPF_CANDIDATES;
    const failures: string[] = [];
    for (const path of candidates) {
      try {
        libbpfLib = Deno.dlopen(path, LIBBPF_SYMBOLS);
        libbpfPath = path;
        break;
      } catch (e) {
        failures.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      }
    }
    if (!libbpfLib) {
      throw new KupodError(
        `libbpf.so.1 (1.1 or newer) not found: install libbpf1 (Debian/Ubuntu) or libbpf ` +
          `(Fedora), or set KUPOD_LIBBPF to its path (tried ${failures.join("; ")})`,
      );
    }
  }
  return libbpfLib.symbols;
}

/**
 * The libbpf in use, as `kupod version` shows it: its version and the path it was opened by
 * (a release names its bundled copy in KUPOD_LIBBPF); the error line when none loads.
 */
export function libbpfVersion(): string {
  try {
    const v = readCString(libbpf().libbpf_version_string());
    return `${v.replace(/^v/, "")} (${libbpfPath})`;
  } catch (e) {
    return `not loaded: ${(e as Error).message}`;
  }
}

/** libc's symbols; opened on first use. */
export function libc(): Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"] {
  libcLib ??= Deno.dlopen("libc.so.6", LIBC_SYMBOLS);
  return libcLib.symbols;
}

/** The calling thread's errno, read right after the failed call. */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

const encoder = new TextEncoder();

/** A NUL-terminated copy of `s` for a `const char *` parameter. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The C string at `p`, or "" for NULL. */
export function readCString(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}
