/*
 * The sidecars' upstream connections, where the service at the other end
 * finds them: a 4-way set-associative array of slots. A sidecar connection
 * claims a slot at its handshake and frees it at close; the service looks
 * its peer up once, at its first read, and both ends keep the slot index in
 * their connection state, so that a request costs one array lookup on each
 * side instead of a hash of the 4-tuple. Every access checks the slot's tag:
 * a slot taken over meanwhile (the sidecar connection closed, or two claims
 * raced) is passed over, never misread.
 */
#ifndef KUPOD_SOCKET_UPSTREAMS_H
#define KUPOD_SOCKET_UPSTREAMS_H

#include "flow.h"

#define UPSTREAM_SLOTS 16384 /* a power of two */
#define UPSTREAM_WAYS 4
#define UPSTREAM_NO_SLOT ((__u32)-1)

/* The last request a sidecar wrote on one upstream connection. */
struct upstream {
	__u64 tag;        /* upstream_tag() of the sidecar's flow; 0: a free slot */
	__u64 written_ns; /* 0: taken by the service */
	__u64 process_ns;
	/*
	 * A read of the service that found no forward to take: where a write is
	 * taken when it returns, the service may have read it before (loopback
	 * delivers inside the send). Each side tells its own bytes by sequence
	 * number: the service's copied_seq after that read against the first
	 * byte of the forward, where the sidecar's socket counts them (not a
	 * redirected send's).
	 */
	__u64 early_ns; /* 0: none */
	__u32 early_seq;
	__u32 written_seq;
	__u32 sidecar;
	__u32 service; /* the container of the early read */
	__u8 seq_known;
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UPSTREAM_SLOTS);
	__type(key, __u32);
	__type(value, struct upstream);
} upstreams SEC(".maps");

#define TAG_PRIME 0x9e3779b97f4a7c15ULL

static __always_inline __u64 tag_mix(__u64 h, __u32 v)
{
	return (h ^ v) * TAG_PRIME;
}

/*
 * A never-zero 64-bit tag of a sidecar's upstream flow: from the sidecar's
 * socket (`peer` false), or from the service's socket at the other end, whose
 * flow has the endpoints swapped (`peer` true).
 */
static __always_inline __u64 upstream_tag(const struct flow *f, bool peer)
{
	const __u8 *sidecar = peer ? f->daddr : f->saddr;
	const __u8 *service = peer ? f->saddr : f->daddr;
	__u32 ports = peer ? ((__u32)f->dport << 16 | f->sport) : ((__u32)f->sport << 16 | f->dport);
	__u64 h = TAG_PRIME;
	__u32 a, b;

#pragma unroll
	for (int i = 0; i < 16; i += 4) {
		__builtin_memcpy(&a, sidecar + i, 4);
		__builtin_memcpy(&b, service + i, 4);
		h = tag_mix(tag_mix(h, a), b);
	}
	h = tag_mix(h, ports);
	return (h ^ (h >> 31)) | 1;
}

/* The first slot of the tag's set. */
static __always_inline __u32 upstream_set(__u64 tag)
{
	return (__u32)(tag >> 40) & (UPSTREAM_SLOTS - 1) & ~(__u32)(UPSTREAM_WAYS - 1);
}

/* The slot `slot` if it still holds `tag`. */
static __always_inline struct upstream *upstream_at(__u32 slot, __u64 tag)
{
	struct upstream *u = bpf_map_lookup_elem(&upstreams, &slot);

	return u && u->tag == tag ? u : NULL;
}

/* A sidecar's upstream connection claims a slot; UPSTREAM_NO_SLOT when its set is full. */
static __always_inline __u32 upstream_claim(__u64 tag, __u32 sidecar)
{
	__u32 set = upstream_set(tag);

#pragma unroll
	for (__u32 i = 0; i < UPSTREAM_WAYS; i++) {
		__u32 slot = set + i;
		struct upstream *u = bpf_map_lookup_elem(&upstreams, &slot);

		if (!u || (u->tag && u->tag != tag))
			continue;
		u->written_ns = 0;
		u->process_ns = 0;
		u->early_ns = 0;
		u->sidecar = sidecar;
		u->tag = tag;
		return slot;
	}
	return UPSTREAM_NO_SLOT;
}

/* The slot of the sidecar connection with `tag`, its index in *slot; NULL if there is none. */
static __always_inline struct upstream *upstream_find(__u64 tag, __u32 *slot)
{
	__u32 set = upstream_set(tag);
	struct upstream *u;

#pragma unroll
	for (__u32 i = 0; i < UPSTREAM_WAYS; i++) {
		u = upstream_at(set + i, tag);
		if (u) {
			*slot = set + i;
			return u;
		}
	}
	*slot = UPSTREAM_NO_SLOT;
	return NULL;
}

static __always_inline void upstream_release(__u32 slot, __u64 tag)
{
	struct upstream *u = upstream_at(slot, tag);

	if (u)
		u->tag = 0;
}

#endif
