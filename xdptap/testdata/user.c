// SPDX-License-Identifier: (MIT OR GPL-2.0)
// A user's own XDP object for xdptap's tests: counts every frame in "hits" and drops frames
// of the local experimental EtherType 0x88B5, passing the rest.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("xdp")
int user_drop_88b5(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&hits, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	__u8 *p = data;
	if ((void *)(p + 14) > end)
		return XDP_PASS;
	return (p[12] == 0x88 && p[13] == 0xb5) ? XDP_DROP : XDP_PASS;
}

// Not an XDP program: loading it as one must fail in plain words.
SEC("socket")
int user_socket(struct __sk_buff *skb)
{
	return 0;
}

char __license[] SEC("license") = "Dual MIT/GPL";
