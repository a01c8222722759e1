// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// vhostd's built-in XDP programs for the TAP a guest sends through. Every program sees the
// frames the guest transmits (written by vhostd on the TAP fd), before the host stack
// allocates anything. The Go side (xdptap/*.go) loads only the program it attaches and the
// maps that program uses. Map and counter layouts are mirrored in xdptap/maps.go.
//
// Regenerate with `go generate ./xdptap` (needs clang); see xdptap/gen.sh.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Ethernet, from include/uapi/linux/if_ether.h.
#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

// IP protocol numbers, from include/uapi/linux/in.h and in6.h.
#define IPPROTO_HOPOPTS 0
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132

// ICMPv6 and Neighbor Discovery, RFC 4861 and RFC 3810.
#define ND_ROUTER_SOLICIT 133
#define ND_ROUTER_ADVERT 134
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_REDIRECT 137
#define MLD2_REPORT 143
#define ND_OPT_SOURCE_LL_ADDR 1
#define ND_OPT_TARGET_LL_ADDR 2

// The TAP has at most 256 queues (MAX_TAP_QUEUES in drivers/net/tun.c).
#define MAX_QUEUES 256

// Program-private header layouts, byte-addressed so they mean the same on every target.
struct eth {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
	__be16 proto;
} __attribute__((packed));

struct ip4 {
	__u8 vihl;
	__u8 tos;
	__be16 len;
	__be16 id;
	__be16 frag; // flags(3) | fragment offset(13)
	__u8 ttl;
	__u8 proto;
	__be16 csum;
	__be32 src;
	__be32 dst;
} __attribute__((packed));

struct ip6 {
	__be32 vtcfl;
	__be16 len;
	__u8 next;
	__u8 hops;
	__u8 src[16];
	__u8 dst[16];
} __attribute__((packed));

struct arp4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
} __attribute__((packed));

// ---- per-queue counters (count, count_drop, reflect) ----

struct queue_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct queue_count);
} queue_stats SEC(".maps");

static __always_inline void count_queue(struct xdp_md *ctx)
{
	__u32 q = ctx->rx_queue_index;
	struct queue_count *c = bpf_map_lookup_elem(&queue_stats, &q);
	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	count_queue(ctx);
	return XDP_PASS;
}

SEC("xdp")
int xdp_count_drop(struct xdp_md *ctx)
{
	count_queue(ctx);
	return XDP_DROP;
}

// ---- reflect ----

// reflect_port holds one entry, key 0: the ifindex of the TAP the program is attached to.
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reflect_port SEC(".maps");

SEC("xdp")
int xdp_reflect(struct xdp_md *ctx)
{
	count_queue(ctx);
	return bpf_redirect_map(&reflect_port, 0, XDP_DROP);
}

// ---- switch ----

struct mac_key {
	__u8 addr[ETH_ALEN];
	__u16 pad; // always zero
};

// switch_fdb maps a local guest's MAC to the ifindex of its TAP.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct mac_key);
	__type(value, __u32);
} switch_fdb SEC(".maps");

// switch_ports holds the TAPs frames may be redirected into, keyed by ifindex.
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} switch_ports SEC(".maps");

enum switch_counter {
	SWITCH_REDIRECTED,
	SWITCH_PASSED,
	SWITCH_NUM,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SWITCH_NUM);
	__type(key, __u32);
	__type(value, __u64);
} switch_stats SEC(".maps");

static __always_inline void count_switch(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&switch_stats, &i);
	if (v)
		(*v)++;
}

SEC("xdp")
int xdp_switch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct eth *eth = data;
	if ((void *)(eth + 1) > end || (eth->dst[0] & 1)) { // runt, broadcast or multicast
		count_switch(SWITCH_PASSED);
		return XDP_PASS;
	}
	struct mac_key k = {};
	__builtin_memcpy(k.addr, eth->dst, ETH_ALEN);
	__u32 *ifindex = bpf_map_lookup_elem(&switch_fdb, &k);
	if (!ifindex || *ifindex == ctx->ingress_ifindex) {
		count_switch(SWITCH_PASSED);
		return XDP_PASS;
	}
	long act = bpf_redirect_map(&switch_ports, *ifindex, XDP_PASS);
	count_switch(act == XDP_REDIRECT ? SWITCH_REDIRECTED : SWITCH_PASSED);
	return act;
}

// ---- guard ----

#define GUARD_ALLOW_DHCP4 1 // IPv4 source 0.0.0.0 allowed for DHCP client to server (UDP 68 -> 67)

struct guard_config {
	__u8 mac[ETH_ALEN];
	__u8 flags; // GUARD_*
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} guard_config SEC(".maps");

// Allowed source addresses: prefix length counted in bits of addr.
struct lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4);
	__type(value, __u32);
} guard_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6);
	__type(value, __u32);
} guard_src6 SEC(".maps");

// Denied destinations. The prefix covers proto, pad and port (32 bits) and then the address:
// a rule for any protocol and port is proto 0, port 0; a rule for any port of one protocol is
// port 0. prefixlen = 32 + address prefix length.
struct acl4 {
	__u32 prefixlen;
	__u8 proto;
	__u8 pad;
	__be16 port;
	__u8 addr[4];
};

struct acl6 {
	__u32 prefixlen;
	__u8 proto;
	__u8 pad;
	__be16 port;
	__u8 addr[16];
};

#define ACL_MAX (1 << 20)

// Each family's ACL is split in two tries by the top bit of the destination address (_lo:
// 0, _hi: 1; a rule for a /0 prefix is in both), so that userspace fills the two in
// parallel, one CPU each: an LPM trie takes one lock for every insert. A packet meets one
// trie, chosen by its destination.
#define ACL_MAP(name, ktype)                                                               \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                       \
		__uint(max_entries, ACL_MAX);                                              \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                      \
		__type(key, struct ktype);                                                 \
		__type(value, __u32);                                                      \
	} name SEC(".maps")

ACL_MAP(guard_acl4_lo, acl4);
ACL_MAP(guard_acl4_hi, acl4);
ACL_MAP(guard_acl6_lo, acl6);
ACL_MAP(guard_acl6_hi, acl6);

enum guard_counter {
	GUARD_PASS,
	GUARD_DROP_SRC_MAC,
	GUARD_DROP_SRC_IPV4,
	GUARD_DROP_SRC_IPV6,
	GUARD_DROP_ARP,
	GUARD_DROP_ND,
	GUARD_DROP_ACL_IPV4,
	GUARD_DROP_ACL_IPV6,
	GUARD_DROP_MALFORMED,
	GUARD_DROP_VLAN,
	GUARD_NUM,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_NUM);
	__type(key, __u32);
	__type(value, __u64);
} guard_stats SEC(".maps");

// verdict is what the checks below return: the guard_counter reason. xdp_guard counts it,
// reports a drop to a running capture and turns it into the XDP action.
static __always_inline int verdict(__u32 reason)
{
	return reason;
}

// Drop reports for a capture (vhostd --pcap, vhostd ctl pcap): while guard_capture[0] is
// non-zero, each dropped frame's first GUARD_SNAP bytes, its length and reason go to the
// guard_drops ring buffer, which the capture writer reads. Off, a drop costs one array
// lookup more and a pass nothing. Mirrored in xdptap/capture.go.
#define GUARD_SNAP 256

struct guard_drop {
	__u32 reason; // enum guard_counter
	__u32 len;    // the frame's length
	__u32 caplen; // bytes of data filled
	__u32 pad;
	__u8 data[GUARD_SNAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} guard_capture SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} guard_drops SEC(".maps");

static __always_inline void report_drop(struct xdp_md *ctx, __u32 reason)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&guard_capture, &zero);
	if (!on || !*on)
		return;
	struct guard_drop *d = bpf_ringbuf_reserve(&guard_drops, sizeof(*d), 0);
	if (!d)
		return; // the reader is behind: the frame is not captured
	__u32 len = ctx->data_end - ctx->data;
	d->reason = reason;
	d->len = len;
	d->caplen = 0;
	d->pad = 0;
	if (len >= GUARD_SNAP) {
		if (bpf_xdp_load_bytes(ctx, 0, d->data, GUARD_SNAP) == 0)
			d->caplen = GUARD_SNAP;
	} else {
		// The mask gives the verifier the bound; the empty asm keeps clang from
		// dropping it as redundant.
		__u32 n = len;
		asm volatile("" : "+r"(n));
		n &= GUARD_SNAP - 1;
		if (n > 0 && bpf_xdp_load_bytes(ctx, 0, d->data, n) == 0)
			d->caplen = n;
	}
	bpf_ringbuf_submit(d, 0);
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

static __always_inline int src4_allowed(const __u8 *addr)
{
	struct lpm4 k = {.prefixlen = 32};
	__builtin_memcpy(k.addr, addr, 4);
	return bpf_map_lookup_elem(&guard_src4, &k) != 0;
}

static __always_inline int src6_allowed(const __u8 *addr)
{
	struct lpm6 k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&guard_src6, &k) != 0;
}

static __always_inline int acl4_lookup(struct acl4 *k)
{
	if (k->addr[0] & 0x80)
		return bpf_map_lookup_elem(&guard_acl4_hi, k) != 0;
	return bpf_map_lookup_elem(&guard_acl4_lo, k) != 0;
}

static __always_inline int acl6_lookup(struct acl6 *k)
{
	if (k->addr[0] & 0x80)
		return bpf_map_lookup_elem(&guard_acl6_hi, k) != 0;
	return bpf_map_lookup_elem(&guard_acl6_lo, k) != 0;
}

// acl4_denied looks the destination up three times: with the port (when known), with the
// protocol alone, and with neither.
static __always_inline int acl4_denied(__be32 dst, __u8 proto, __be16 port)
{
	struct acl4 k = {.prefixlen = 64, .proto = proto, .port = port};
	__builtin_memcpy(k.addr, &dst, 4);
	if (port && acl4_lookup(&k))
		return 1;
	k.port = 0;
	if (acl4_lookup(&k))
		return 1;
	k.proto = 0;
	return acl4_lookup(&k);
}

static __always_inline int acl6_denied(const __u8 *dst, __u8 proto, __be16 port)
{
	struct acl6 k = {.prefixlen = 160, .proto = proto, .port = port};
	__builtin_memcpy(k.addr, dst, 16);
	if (port && acl6_lookup(&k))
		return 1;
	k.port = 0;
	if (acl6_lookup(&k))
		return 1;
	k.proto = 0;
	return acl6_lookup(&k);
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

static __always_inline int guard_arp(void *l3, void *end, struct guard_config *cfg)
{
	struct arp4 *a = l3;
	if ((void *)(a + 1) > end)
		return verdict(GUARD_DROP_MALFORMED);
	if (a->htype != bpf_htons(1) || a->ptype != bpf_htons(ETH_P_IP) || a->hlen != ETH_ALEN ||
	    a->plen != 4)
		return verdict(GUARD_DROP_ARP);
	if (!mac_eq(a->sha, cfg->mac))
		return verdict(GUARD_DROP_ARP);
	// Sender 0.0.0.0 is an address probe (RFC 5227).
	__u32 spa;
	__builtin_memcpy(&spa, a->spa, 4);
	if (spa != 0 && !src4_allowed(a->spa))
		return verdict(GUARD_DROP_ARP);
	return verdict(GUARD_PASS);
}

static __always_inline int guard_ip4(void *l3, void *end, struct guard_config *cfg)
{
	struct ip4 *ip = l3;
	if ((void *)(ip + 1) > end)
		return verdict(GUARD_DROP_MALFORMED);
	__u32 ihl = ip->vihl & 0xf;
	if ((ip->vihl >> 4) != 4 || ihl < 5)
		return verdict(GUARD_DROP_MALFORMED);
	__be16 sport = 0, dport = 0;
	int first = (ip->frag & bpf_htons(0x1fff)) == 0;
	if (first && has_ports(ip->proto)) {
		__be16 *l4 = l3 + ihl * 4;
		if ((void *)(l4 + 2) > end)
			return verdict(GUARD_DROP_MALFORMED);
		sport = l4[0];
		dport = l4[1];
	}
	if (ip->src == 0) {
		if (!(cfg->flags & GUARD_ALLOW_DHCP4) || ip->proto != IPPROTO_UDP ||
		    sport != bpf_htons(68) || dport != bpf_htons(67))
			return verdict(GUARD_DROP_SRC_IPV4);
	} else if (!src4_allowed((__u8 *)&ip->src)) {
		return verdict(GUARD_DROP_SRC_IPV4);
	}
	if (acl4_denied(ip->dst, ip->proto, dport))
		return verdict(GUARD_DROP_ACL_IPV4);
	return verdict(GUARD_PASS);
}

// guard_nd checks a Neighbor Discovery message from the guest: no router advertisements or
// redirects, link-layer address options that name the guest's MAC, and advertisements only
// for the guest's own addresses.
static __always_inline int guard_nd(__u8 *icmp, void *end, struct guard_config *cfg)
{
	__u8 type = icmp[0];
	if (type == ND_ROUTER_ADVERT || type == ND_REDIRECT)
		return GUARD_DROP_ND;
	if (type != ND_NEIGHBOR_SOLICIT && type != ND_NEIGHBOR_ADVERT)
		return GUARD_PASS;
	// type, code, checksum, flags/reserved (8 bytes), target (16 bytes), options.
	if ((void *)(icmp + 24) > end)
		return GUARD_DROP_MALFORMED;
	if (type == ND_NEIGHBOR_ADVERT && !src6_allowed(icmp + 8))
		return GUARD_DROP_ND;
	__u8 *opt = icmp + 24;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if ((void *)(opt + 2) > end)
			return GUARD_PASS;
		__u8 otype = opt[0], olen = opt[1];
		if (olen == 0)
			return GUARD_DROP_MALFORMED; // RFC 4861 4.6: a zero length is invalid
		if (otype == ND_OPT_SOURCE_LL_ADDR || otype == ND_OPT_TARGET_LL_ADDR) {
			if ((void *)(opt + 8) > end)
				return GUARD_DROP_MALFORMED;
			if (!mac_eq(opt + 2, cfg->mac))
				return GUARD_DROP_ND;
		}
		opt += olen * 8;
	}
	// More options than checked: refuse rather than let an unchecked one through.
	if ((void *)(opt + 1) > end)
		return GUARD_PASS;
	return GUARD_DROP_ND;
}

static __always_inline int guard_ip6(void *l3, void *end, struct guard_config *cfg)
{
	struct ip6 *ip = l3;
	if ((void *)(ip + 1) > end)
		return verdict(GUARD_DROP_MALFORMED);
	if ((bpf_ntohl(ip->vtcfl) >> 28) != 6)
		return verdict(GUARD_DROP_MALFORMED);

	// Walk the extension headers to the upper-layer header, up to a fixed depth.
	__u8 next = ip->next;
	__u8 *l4 = (__u8 *)(ip + 1);
	int first = 1;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS &&
		    next != IPPROTO_FRAGMENT && next != IPPROTO_AH)
			break;
		if ((void *)(l4 + 8) > end)
			return verdict(GUARD_DROP_MALFORMED);
		__u32 len;
		if (next == IPPROTO_FRAGMENT) {
			len = 8;
			if ((l4[2] << 8 | l4[3]) & 0xfff8)
				first = 0;
		} else if (next == IPPROTO_AH) {
			len = ((__u32)l4[1] + 2) * 4;
		} else {
			len = ((__u32)l4[1] + 1) * 8;
		}
		next = l4[0];
		l4 += len;
	}
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	    next == IPPROTO_FRAGMENT || next == IPPROTO_AH)
		return verdict(GUARD_DROP_MALFORMED); // too deep to inspect

	__u8 nd = GUARD_PASS;
	int unspecified = 0;
	__u32 *s = (__u32 *)ip->src;
	if ((s[0] | s[1] | s[2] | s[3]) == 0)
		unspecified = 1;
	__be16 dport = 0;
	if (next == IPPROTO_ICMPV6 && first) {
		if ((void *)(l4 + 4) > end)
			return verdict(GUARD_DROP_MALFORMED);
		// The unspecified source is for duplicate address detection, its MLD reports, and
		// router solicitations before an address is configured (RFC 4861 4.1).
		if (unspecified && l4[0] != ND_NEIGHBOR_SOLICIT && l4[0] != MLD2_REPORT &&
		    l4[0] != ND_ROUTER_SOLICIT)
			return verdict(GUARD_DROP_SRC_IPV6);
		nd = guard_nd(l4, end, cfg);
		if (nd != GUARD_PASS)
			return verdict(nd);
	} else if (unspecified) {
		return verdict(GUARD_DROP_SRC_IPV6);
	} else if (first && has_ports(next)) {
		if ((void *)(l4 + 4) > end)
			return verdict(GUARD_DROP_MALFORMED);
		dport = ((__be16 *)l4)[1];
	}
	if (!unspecified && !src6_allowed(ip->src))
		return verdict(GUARD_DROP_SRC_IPV6);
	if (acl6_denied(ip->dst, next, dport))
		return verdict(GUARD_DROP_ACL_IPV6);
	return verdict(GUARD_PASS);
}

// guard_frame checks one frame from the guest and returns its guard_counter reason.
static __always_inline __u32 guard_frame(struct xdp_md *ctx, struct guard_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct eth *eth = data;
	if ((void *)(eth + 1) > end)
		return verdict(GUARD_DROP_MALFORMED);
	if (!mac_eq(eth->src, cfg->mac))
		return verdict(GUARD_DROP_SRC_MAC);
	void *l3 = eth + 1;
	switch (eth->proto) {
	case bpf_htons(ETH_P_IP):
		return guard_ip4(l3, end, cfg);
	case bpf_htons(ETH_P_IPV6):
		return guard_ip6(l3, end, cfg);
	case bpf_htons(ETH_P_ARP):
		return guard_arp(l3, end, cfg);
	case bpf_htons(ETH_P_8021Q):
	case bpf_htons(ETH_P_8021AD):
		return verdict(GUARD_DROP_VLAN);
	}
	return verdict(GUARD_PASS);
}

SEC("xdp")
int xdp_guard(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct guard_config *cfg = bpf_map_lookup_elem(&guard_config, &zero);
	if (!cfg)
		return XDP_ABORTED;
	__u32 reason = guard_frame(ctx, cfg);
	__u64 *v = bpf_map_lookup_elem(&guard_stats, &reason);
	if (v)
		(*v)++;
	if (reason == GUARD_PASS)
		return XDP_PASS;
	report_drop(ctx, reason);
	return XDP_DROP;
}

char __license[] SEC("license") = "Dual MIT/GPL";
