/*
 * The user buffer of the read or write syscall the current task is in, from
 * the syscall's saved registers (bpf_task_pt_regs): no syscall tracepoint is
 * needed. Used from sock_send_length / sock_recv_length, which run inside the
 * syscall after the bytes moved. sendfile, splice and io_uring have no such
 * buffer: the payload is then unknown.
 */
#ifndef KUPOD_PAYLOAD_H
#define KUPOD_PAYLOAD_H

#define PAYLOAD_NONE 0
#define PAYLOAD_FLAT 1 /* one buffer */
#define PAYLOAD_IOV 2  /* an iovec array */

#if defined(__TARGET_ARCH_x86)
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define SYSCALL_NR(r) ((r)->orig_ax)
#define SYSCALL_ARG2(r) ((r)->si)
#define SYSCALL_ARG3(r) ((r)->dx)
#elif defined(__TARGET_ARCH_arm64)
#define NR_READ 63
#define NR_WRITE 64
#define NR_READV 65
#define NR_WRITEV 66
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#define SYSCALL_NR(r) ((r)->syscallno)
#define SYSCALL_ARG2(r) ((r)->regs[1])
#define SYSCALL_ARG3(r) ((r)->regs[2])
#else
#error "payload.h: syscall registers of this architecture are not known"
#endif

struct payload {
	const void *buf;          /* PAYLOAD_FLAT */
	const struct iovec *iov;  /* PAYLOAD_IOV */
	__u64 iovcnt;
	__u32 kind;
};

/* Where the current syscall's data is. */
static __always_inline void payload_of_current(struct payload *p)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = SYSCALL_NR(regs);

	p->kind = PAYLOAD_NONE;
	switch (nr) {
	case NR_READ:
	case NR_WRITE:
	case NR_SENDTO:
	case NR_RECVFROM:
		p->buf = (const void *)SYSCALL_ARG2(regs);
		p->kind = PAYLOAD_FLAT;
		return;
	case NR_READV:
	case NR_WRITEV:
		p->iov = (const struct iovec *)SYSCALL_ARG2(regs);
		p->iovcnt = SYSCALL_ARG3(regs);
		p->kind = PAYLOAD_IOV;
		return;
	case NR_SENDMSG:
	case NR_RECVMSG: {
		struct user_msghdr msg;

		if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)SYSCALL_ARG2(regs)))
			return;
		p->iov = msg.msg_iov;
		p->iovcnt = msg.msg_iovlen;
		p->kind = PAYLOAD_IOV;
		return;
	}
	}
}

#endif
