/* Records and per-binary layout of the grpc-go uprobes; decoders are generated from their BTF. */
#ifndef KUPOD_GRPC_GO_H
#define KUPOD_GRPC_GO_H

#define GRPC_GO_PATH_MAX 128 /* bytes of :path copied */
/* Header fields searched for :path; pseudo-headers come first (RFC 9113 8.3), so it is early. */
#define GRPC_GO_MAX_FIELDS 16
#define GRPC_GO_MAX_BINARIES 64

#define GRPC_GO_NO_REG 0xffffffff

#define GRPC_GO_SIDE_SERVER 0
#define GRPC_GO_SIDE_CLIENT 1

/* One gRPC stream whose decoded :path a grpc-go process handled. */
struct grpc_go_event {
	__u64 ts_ns;      /* bpf_ktime_get_boot_ns() */
	__u64 sock_id;    /* kernel socket address, as the socket and HTTP probes' (0: unknown) */
	__u32 pid;        /* tgid */
	__u32 tid;
	__u32 container;  /* index into the target's containers, or (u32)-1 */
	__u32 stream_id;  /* HTTP/2 stream id */
	__s32 fd;         /* the connection's fd in the process (-1: not a TCP connection) */
	__u16 path_len;   /* bytes of path set */
	__u8 side;        /* GRPC_GO_SIDE_* */
	__u8 truncated;   /* :path was longer than GRPC_GO_PATH_MAX */
	char path[GRPC_GO_PATH_MAX];
};

/*
 * Where a binary keeps what the probes read, from its DWARF (probes/go/grpc_layout.ts), by
 * the attach cookie. Every field is a __u32 in this order: user space writes them by index
 * (checked against this object's BTF in tests/grpc_go_test.ts). Registers are DWARF numbers.
 */
struct grpc_go_conf {
	/* (*http2Server).operateHeaders(t, frame, ...) */
	__u32 srv_t_reg;
	__u32 srv_frame_reg;
	__u32 srv_conn_off;      /* http2Server.conn (net.Conn) */
	__u32 mhf_headers_off;   /* MetaHeadersFrame.HeadersFrame (*HeadersFrame) */
	__u32 mhf_fields_off;    /* MetaHeadersFrame.Fields ([]hpack.HeaderField) */
	__u32 hf_stream_id_off;  /* HeadersFrame.FrameHeader.StreamID */
	/*
	 * (*loopyWriter).originateStream(l, str[, hdr]): a client opens a stream. Without an hdr
	 * argument (grpc-go before 1.55) the header frame is the one item queued on the stream:
	 * str.itl.head.it.
	 */
	__u32 cli_l_reg;
	__u32 cli_str_reg;
	__u32 cli_hdr_reg;       /* GRPC_GO_NO_REG: no hdr argument */
	__u32 outstream_id_off;  /* outStream.id */
	__u32 outstream_itl_off; /* outStream.itl (*itemList) */
	__u32 itemlist_head_off; /* itemList.head (*itemNode) */
	__u32 itemnode_it_off;   /* itemNode.it (interface{}) */
	__u32 eface_data_off;
	__u32 hdr_hf_off;        /* headerFrame.hf ([]hpack.HeaderField) */
	__u32 loopy_framer_off;  /* loopyWriter.framer (*framer) */
	__u32 framer_writer_off; /* framer.writer (*bufWriter) */
	__u32 bufw_conn_off;     /* bufWriter.conn (net.Conn) */
	/* Go's own layouts */
	__u32 slice_ptr_off;
	__u32 slice_len_off;
	__u32 field_size;        /* hpack.HeaderField */
	__u32 field_name_off;
	__u32 field_value_off;
	__u32 str_ptr_off;
	__u32 str_len_off;
	__u32 iface_tab_off;
	__u32 iface_data_off;
	__u32 itab_type_off;     /* itab._type: the dynamic type (an itab made at run time has no hash) */
	__u32 type_hash_off;     /* _type.hash */
	/*
	 * The connection: a *net.TCPConn, or up to two wrappers around one, each known by its
	 * type hash and the offset of the interface it wraps (*tls.Conn: conn; grpc's TLS
	 * *credentials.syscallConn: sysConn, the raw connection). A hash of 0: not in the binary.
	 */
	__u32 tcp_hash;          /* type hash of *net.TCPConn (its net.Conn itab's) */
	__u32 tcp_fd_off;        /* TCPConn.conn.fd (*netFD) */
	__u32 netfd_sysfd_off;   /* netFD.pfd.Sysfd (int) */
	__u32 wrap1_hash;
	__u32 wrap1_off;
	__u32 wrap2_hash;
	__u32 wrap2_off;
};

#endif
