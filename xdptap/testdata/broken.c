// SPDX-License-Identifier: (MIT OR GPL-2.0)
// An XDP object the verifier must reject: it reads the packet without a bounds check.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int broken_unchecked_read(struct xdp_md *ctx)
{
	__u8 *p = (void *)(long)ctx->data;
	return p[12] == 0x08 ? XDP_PASS : XDP_DROP;
}

char __license[] SEC("license") = "Dual MIT/GPL";
