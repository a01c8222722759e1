// Package xdptap owns the XDP programs vhostd attaches to a guest's TAP, their maps, and
// the rules that fill them. XDP on a TAP runs on every frame the guest sends, inside the
// kernel, before the host stack allocates anything: the earliest and cheapest place to
// police, count, drop or redirect guest traffic. The package knows nothing of tap,
// virtqueues or netdev: callers hand it an ifindex.
//
//	guest -> virtqueue -> netdev -> write(TAP fd, hdr + frame)          cmd/vhostd (caller)
//	                                   |                                  |  Attach(ifindex, Config)
//	                                   v                                  |  UpdateACL / LoadRules (SIGHUP)
//	   kernel: tun_get_user / tun_build_skb (fd opened O_NONBLOCK)        |  UpdateGuard, Counters
//	           +------------------------------------------------+        v
//	           | XDP hook, native (generic on macvtap)          |<-- BPF link (goes with the process)
//	           |   xdp_guard       -> PASS / DROP + reason       |<-- guard_config, guard_src4/6,
//	           |   xdp_count       -> PASS       (per queue)     |    guard_acl4/6_lo/hi (batched)
//	           |   xdp_count_drop  -> DROP       (perf sink)     |--> guard_stats, queue_stats,
//	           |   xdp_reflect     -> devmap: same TAP (loop)    |    switch_stats (per-CPU counters)
//	           |   xdp_switch      -> devmap: other guest's TAP  |<-- switch_fdb, switch_ports (Switch)
//	           |   user object     -> whatever it returns        |
//	           +---------|------------------|------------------+
//	                     v PASS             v REDIRECT (tun_xdp_xmit)
//	               host stack, bridge     a TAP's queue -> its fd readers (vhostd's RX path)
//
// # Programs, maps and counters
//
// All built-in programs are in bpf/xdptap.c, compiled by bpf2go into xdp_bpfel.o and
// xdp_bpfel.go (committed: building vhostd never needs clang). Attach loads only the
// program it attaches and the maps that program uses.
//
//   - xdp_guard (ModeGuard): anti-spoofing and ACL. Maps: guard_config (array[1]: the
//     guest's MAC, flags), guard_src4 / guard_src6 (LPM tries, 1024 each: allowed source
//     prefixes), guard_acl4_lo/_hi and guard_acl6_lo/_hi (LPM tries, MaxRules each:
//     denied destinations, key = proto, pad, port, address; each family split by the top
//     bit of the destination address so that two CPUs fill them in parallel, a /0 rule in
//     both; a packet meets the one trie of its destination, three lookups: with the port,
//     with the protocol alone, with neither; a non-first IPv4 or IPv6 fragment has no port, so only
//     prefix and protocol rules apply to it, while its first fragment meets the port
//     rules), guard_stats (per-CPU array). Checks, in order: the
//     Ethernet source is the guest's MAC (else drop_src_mac); VLAN-tagged frames are
//     dropped (drop_vlan: their inner addresses would escape the checks); IPv4: source in
//     guard_src4, or 0.0.0.0 for DHCP 68->67 with AllowDHCP (drop_src_ipv4), then the ACL
//     (drop_acl_ipv4); ARP: Ethernet/IPv4 only, sender MAC the guest's, sender IP allowed
//     or 0.0.0.0 for a probe (drop_arp); IPv6: up to 6 extension headers walked, source in
//     guard_src6, or :: only for neighbor and router solicitations and MLDv2 reports
//     (duplicate address detection, autoconfiguration) (drop_src_ipv6); Neighbor Discovery: no router advertisements or
//     redirects, link-layer address options must name the guest's MAC, advertisements only
//     for allowed addresses, at most 4 options (drop_nd); then the ACL (drop_acl_ipv6).
//     Truncated or impossible headers: drop_malformed. Other EtherTypes pass. Counters:
//     xdp_guard_pass, xdp_guard_drop_{src_mac,src_ipv4,src_ipv6,arp,nd,acl_ipv4,acl_ipv6,
//     malformed,vlan}.
//     Capture (StartCapture): while guard_capture (array[1]) is non-zero, each dropped
//     frame's length, rule and first GuardSnap bytes go to guard_drops (a BPF ring buffer,
//     256 KiB), read by GuardCapture.Read; the flag is looked up on the drop path only.
//   - xdp_count (ModeCount) and xdp_count_drop (ModeCountDrop, the perf harness's sink):
//     count frames and bytes per TAP queue (ctx->rx_queue_index, the queue whose fd the
//     frame was written to), then pass or drop. Map: queue_stats (per-CPU array of
//     {packets, bytes}, 256 queues). Counters: xdp_q<N>_packets, xdp_q<N>_bytes.
//   - xdp_reflect (ModeReflect, the perf harness's loop): counts like xdp_count, then
//     redirects the frame into the same TAP through reflect_port (devmap[1] = the TAP's
//     ifindex); it comes back on the TAP's fds (the queue tun picks: CPU modulo queues).
//   - xdp_switch (ModeSwitch, a guest-to-guest fast path): a unicast frame whose
//     destination MAC is in switch_fdb (hash: MAC -> ifindex) goes straight into that TAP
//     through switch_ports (devmap-hash keyed by ifindex); everything else passes. The maps
//     belong to a Switch, shared by every port's attachment and, with SwitchConfig.PinPath,
//     by several processes. Counters (the whole switch): xdp_switch_redirected,
//     xdp_switch_passed.
//   - A user's object (ModeObject, --xdp-object FILE --xdp-program NAME): the named XDP
//     program and the object's maps; Attachment.Map reads them. No counters of ours.
//
// # Attaching
//
// Attach uses a BPF link, so the program goes away when the process exits, and native mode
// on a TAP (the TAP's fds must be opened O_NONBLOCK to get tun's fast path). On a macvtap
// native XDP does not exist and generic mode is used; but frames the guest writes into a
// macvtap leave through the lower device's transmit path and never meet XDP on the
// macvtap, which sees only frames arriving for the guest: the guard, reflect and switch are
// refused there, count and user objects work on the guest's receive direction. There is no
// silent fallback: a mode that fails is an error naming the device and the mode, and a
// program the verifier rejects is a *VerifierError carrying the verifier's own words.
//
// # Rules
//
// The ACL changes at runtime without reloading: UpdateACL (or LoadRules, a rules file in
// ParseRules' format, re-read on SIGHUP) writes only the difference from what the map
// holds, sorted, with BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH, the two shard tries of
// a family in parallel. BenchmarkACLInsert measures the insertion rate against one update
// per rule.
//
// # Regenerating
//
// `go generate ./xdptap` runs gen.sh (clang, llvm-strip, libbpf-dev, and bpf2go at the
// cilium/ebpf version in go.mod). The objects depend on the compiler: CLANG_VERSION names
// the one that made them. regen-check.sh (and TestGenerated) check that the committed files
// are what the committed C makes.
//
// Privileged tests use internal/privtest: each runs in its own network namespace and skips
// without CAP_NET_ADMIN and XDP, unless VHOSTD_TEST_PRIVILEGED=1.
package xdptap
