/* Common prelude of every kupod BPF object. */
#ifndef KUPOD_H
#define KUPOD_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define TASK_COMM_LEN 16

char LICENSE[] SEC("license") = "GPL";

#endif
