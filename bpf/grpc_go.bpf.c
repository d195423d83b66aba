// SPDX-License-Identifier: GPL-2.0
/*
 * grpc-go, from inside the process: entry uprobes on the library's own
 * functions read the header fields it decoded (server) or is about to encode
 * (client), so a stream's :path is known exactly even on a connection whose
 * HPACK state the capture never saw (opened before kupod started).
 *
 * - (*http2Server).operateHeaders(t, frame, ...): a stream's request headers,
 *   decoded; frame.HeadersFrame.StreamID and frame.Fields.
 * - (*loopyWriter).originateStream(l, str[, hdr]): a client opens stream
 *   str.id with the header fields of its header frame. Only clients call it,
 *   so a server pays for one probe per call.
 *
 * Go passes arguments in registers (Go 1.17+ on amd64 and arm64); which ones,
 * and every struct offset, come from the binary's DWARF by the attach cookie
 * (struct grpc_go_conf). Entry probes only: Go moves goroutine stacks, which
 * breaks return probes. Each record names the kernel socket of the
 * connection (net.Conn → fd → file → socket → sock), the key under which the
 * HTTP probe knows the same connection.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "grpc_go.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GRPC_GO_MAX_BINARIES);
	__type(key, __u32);
	__type(value, struct grpc_go_conf);
} grpc_go_confs SEC(".maps");

/* Anchors the record's BTF for the decoder generator. */
struct grpc_go_event _grpc_go_event = {};

/*
 * The argument registers, by DWARF number. Copied out of the context field by field: a context
 * read at a computed offset is refused by the verifier.
 */
#define GO_REGS 16
static __always_inline void go_regs(const struct pt_regs *ctx, __u64 *r)
{
#if defined(__TARGET_ARCH_x86)
	r[0] = ctx->ax;
	r[1] = ctx->dx;
	r[2] = ctx->cx;
	r[3] = ctx->bx;
	r[4] = ctx->si;
	r[5] = ctx->di;
	r[6] = ctx->bp;
	r[7] = ctx->sp;
	r[8] = ctx->r8;
	r[9] = ctx->r9;
	r[10] = ctx->r10;
	r[11] = ctx->r11;
	r[12] = ctx->r12;
	r[13] = ctx->r13;
	r[14] = ctx->r14;
	r[15] = ctx->r15;
#elif defined(__TARGET_ARCH_arm64)
	for (int i = 0; i < GO_REGS; i++)
		r[i] = ctx->regs[i];
#else
#error "grpc_go.bpf.c: Go's argument registers of this architecture are not known"
#endif
}

static __always_inline __u64 go_arg(const __u64 *r, __u32 dwarf)
{
	return r[dwarf & (GO_REGS - 1)];
}

static __always_inline __u64 read_u64(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
	return v;
}

/* The kernel socket behind file descriptor `fd` of the current process, 0 if it is none. */
static __always_inline __u64 sock_of_fd(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;
	struct socket *sock;

	if (fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	return (__u64)BPF_CORE_READ(sock, sk);
}

/* The type hash and data pointer of the interface value at `iface`; false when nil. */
static __always_inline bool iface_of(const struct grpc_go_conf *c, __u64 iface, __u32 *hash,
				     __u64 *data)
{
	__u64 tab = read_u64(iface + c->iface_tab_off);

	*data = read_u64(iface + c->iface_data_off);
	*hash = 0;
	if (!tab || !*data)
		return false;
	bpf_probe_read_user(hash, sizeof(*hash),
			    (const void *)(read_u64(tab + c->itab_type_off) + c->type_hash_off));
	return true;
}

/*
 * The fd of the net.Conn interface value at `iface`: a *net.TCPConn, possibly inside up to two
 * known wrappers. -1 for any other type: its layout is not known, so nothing is guessed.
 */
static __always_inline __s32 conn_fd(const struct grpc_go_conf *c, __u64 iface)
{
	__u64 data;
	__u32 hash;

	for (int i = 0; i < 3; i++) {
		if (!iface_of(c, iface, &hash, &data))
			return -1;
		if (c->tcp_hash && hash == c->tcp_hash)
			return (__s32)read_u64(read_u64(data + c->tcp_fd_off) + c->netfd_sysfd_off);
		if (c->wrap1_hash && hash == c->wrap1_hash)
			iface = data + c->wrap1_off;
		else if (c->wrap2_hash && hash == c->wrap2_hash)
			iface = data + c->wrap2_off;
		else
			return -1;
	}
	return -1;
}

/*
 * Copies the value of the :path field among `n` header fields at `fields` into e->path;
 * false when there is none.
 */
static __always_inline bool find_path(const struct grpc_go_conf *c, __u64 fields, __u64 n,
				      struct grpc_go_event *e)
{
	for (int i = 0; i < GRPC_GO_MAX_FIELDS; i++) {
		__u64 f = fields + (__u64)i * c->field_size;
		__u64 len, vlen;
		char name[6];

		if (i >= n)
			return false;
		len = read_u64(f + c->field_name_off + c->str_len_off);
		if (len != 5)
			continue;
		if (bpf_probe_read_user(name, 5, (const void *)read_u64(f + c->field_name_off +
								       c->str_ptr_off)))
			continue;
		if (name[0] != ':' || name[1] != 'p' || name[2] != 'a' || name[3] != 't' ||
		    name[4] != 'h')
			continue;
		vlen = read_u64(f + c->field_value_off + c->str_len_off);
		e->truncated = vlen > GRPC_GO_PATH_MAX;
		if (vlen > GRPC_GO_PATH_MAX)
			vlen = GRPC_GO_PATH_MAX;
		/* a no-op the verifier needs as a bound */
		asm volatile("" : "+r"(vlen));
		vlen &= 2 * GRPC_GO_PATH_MAX - 1;
		if (vlen > GRPC_GO_PATH_MAX)
			return false;
		if (bpf_probe_read_user(e->path, vlen,
					(const void *)read_u64(f + c->field_value_off + c->str_ptr_off)))
			return false;
		e->path_len = vlen;
		return true;
	}
	return false;
}

/*
 * Starts a record for the current task if it belongs to the target and its binary has a
 * layout; false otherwise. Records are built on the stack and copied into the ring only
 * once they hold a :path: a server's response headers never take ring space.
 */
static __always_inline bool start(const struct grpc_go_conf **conf, void *ctx,
				  struct grpc_go_event *e)
{
	__u32 key = (__u32)bpf_get_attach_cookie(ctx);
	__u32 container;
	__u64 id;

	if (!target_current(&container))
		return false;
	*conf = bpf_map_lookup_elem(&grpc_go_confs, &key);
	if (!*conf)
		return false;
	id = bpf_get_current_pid_tgid();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->container = container;
	e->fd = -1;
	return true;
}

static __always_inline void submit(struct grpc_go_event *e)
{
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->sock_id = sock_of_fd(e->fd);
	event_output(e, sizeof(*e), e->ts_ns);
}

SEC("uprobe")
int kupod_go_srv(struct pt_regs *ctx)
{
	const struct grpc_go_conf *c;
	struct grpc_go_event e = {};
	__u64 r[GO_REGS];
	__u64 t, frame, fields, n;

	if (!start(&c, ctx, &e))
		return 0;
	go_regs(ctx, r);
	t = go_arg(r, c->srv_t_reg);
	frame = go_arg(r, c->srv_frame_reg);
	fields = read_u64(frame + c->mhf_fields_off + c->slice_ptr_off);
	n = read_u64(frame + c->mhf_fields_off + c->slice_len_off);
	if (!find_path(c, fields, n, &e))
		return 0;
	e.side = GRPC_GO_SIDE_SERVER;
	bpf_probe_read_user(&e.stream_id, sizeof(e.stream_id),
			    (const void *)(read_u64(frame + c->mhf_headers_off) + c->hf_stream_id_off));
	e.fd = conn_fd(c, t + c->srv_conn_off);
	submit(&e);
	return 0;
}

SEC("uprobe")
int kupod_go_cli(struct pt_regs *ctx)
{
	const struct grpc_go_conf *c;
	struct grpc_go_event e = {};
	__u64 r[GO_REGS];
	__u64 str, hdr, l;

	if (!start(&c, ctx, &e))
		return 0;
	go_regs(ctx, r);
	str = go_arg(r, c->cli_str_reg);
	if (c->cli_hdr_reg < GO_REGS)
		hdr = go_arg(r, c->cli_hdr_reg);
	else
		hdr = read_u64(read_u64(read_u64(str + c->outstream_itl_off) + c->itemlist_head_off) +
			       c->itemnode_it_off + c->eface_data_off);
	if (!find_path(c, read_u64(hdr + c->hdr_hf_off + c->slice_ptr_off),
		       read_u64(hdr + c->hdr_hf_off + c->slice_len_off), &e))
		return 0;
	e.side = GRPC_GO_SIDE_CLIENT;
	bpf_probe_read_user(&e.stream_id, sizeof(e.stream_id),
			    (const void *)(str + c->outstream_id_off));
	l = go_arg(r, c->cli_l_reg);
	e.fd = conn_fd(c, read_u64(read_u64(l + c->loopy_framer_off) + c->framer_writer_off) +
				  c->bufw_conn_off);
	submit(&e);
	return 0;
}
