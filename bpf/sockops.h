/* Counters of the sockops redirection; the TypeScript decoders are generated from their BTF. */
#ifndef KUPOD_SOCKOPS_H
#define KUPOD_SOCKOPS_H

/* Per container (the sender's), per CPU. */
struct sockops_stats {
	__u64 redirected_bytes; /* sent straight to the peer socket */
	__u64 redirected_msgs;
	__u64 redirect_errors;  /* sends of a redirected socket whose peer was not in the map (normal path) */
	__u64 added;            /* sockets put into the map, by the container that made them */
	/* the pod's slot only: every socket put into the map, and those of them closed since */
	__u64 inserted;
	__u64 removed;
};

#endif
