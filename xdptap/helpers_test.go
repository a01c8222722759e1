package xdptap

import (
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
)

var (
	guestMAC = net.HardwareAddr{0x02, 0x76, 0x68, 0x64, 0x00, 0x01}
	otherMAC = net.HardwareAddr{0x02, 0x76, 0x68, 0x64, 0x00, 0x02}
	hostMAC  = net.HardwareAddr{0x02, 0x76, 0x68, 0x64, 0x00, 0xfe}
)

// requireXDP gates a test on privileges and on the kernel's XDP support: it skips with
// the reason, or fails with VHOSTD_TEST_PRIVILEGED=1. (XDP links, 5.9, are not probed: a
// kernel with XDP but without them fails the tests, as it should.)
func requireXDP(t testing.TB) {
	t.Helper()
	privtest.Require(t)
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		privtest.Missing(t, "XDP programs: %v", err)
	}
}

// openTAP opens a fresh TAP, up, in the test's network namespace (NetNS must have been
// called by the same goroutine).
func openTAP(t testing.TB, queues int) *tap.Device {
	t.Helper()
	d, err := tap.OpenTAP(tap.Config{Name: "vhx" + testutil.Suffix(8), Queues: queues})
	if err != nil {
		t.Fatalf("OpenTAP: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.SetUp(true); err != nil {
		t.Fatalf("SetUp: %v", err)
	}
	return d
}

// newTAP makes a netns and a TAP in it.
func newTAP(t testing.TB, queues int) (*tap.Device, string) {
	t.Helper()
	requireXDP(t)
	ns := privtest.NetNS(t)
	return openTAP(t, queues), ns
}

func attach(t testing.TB, ifindex int, c Config) *Attachment {
	t.Helper()
	a, err := Attach(ifindex, c)
	if err != nil {
		t.Fatalf("Attach(%d, %v): %v", ifindex, c.Mode, err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a
}

// write sends frames into queue q as a guest would: a zero virtio-net header, the frame.
func write(t testing.TB, q *tap.Queue, frames ...[]byte) {
	t.Helper()
	var hdr [tap.VnetHdrLen]byte
	batch := make([][]unix.Iovec, len(frames))
	for i, f := range frames {
		batch[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(f)}
	}
	if n, e := q.WriteBatch(batch); e != 0 {
		t.Fatalf("WriteBatch: wrote %d of %d: %v", n, len(frames), e)
	}
}

// read returns the frames (without header) that arrive on q within timeout, stopping
// early once want arrived.
func read(t testing.TB, q *tap.Queue, want int, timeout time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	var hdr [tap.VnetHdrLen]byte
	buf := make([]byte, 65536)
	frames := [][]unix.Iovec{{rawio.Iovec(hdr[:]), rawio.Iovec(buf)}}
	sizes := []int{0}
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(q.Fd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 50); err != nil && err != unix.EINTR {
			t.Fatalf("poll: %v", err)
		}
		for {
			n, e := q.ReadBatch(frames, sizes)
			if n == 0 {
				if e != unix.EAGAIN && e != 0 {
					t.Fatalf("ReadBatch: %v", e)
				}
				break
			}
			got = append(got, append([]byte(nil), buf[:sizes[0]-tap.VnetHdrLen]...))
		}
	}
	return got
}

// testFrames returns the frames of got that are testutil.TaggedFrames with tag (or a tag
// that starts with it).
func testFrames(got [][]byte, tag string) [][]byte {
	var out [][]byte
	for _, f := range got {
		if _, ok := testutil.ParseTaggedFrame(f, tag); ok {
			out = append(out, f)
		}
	}
	return out
}

// rawFrame is a minimum-size testutil.TaggedFrame from src to dst.
func rawFrame(src, dst net.HardwareAddr, tag string) []byte {
	return testutil.TaggedFrame(dst, src, tag, 0, 60)
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func eth(src net.HardwareAddr, typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: hostMAC, EthernetType: typ}
}

// ipFrame builds Ethernet/IPv4 or IPv6/UDP or TCP from src to dst port dport.
func ipFrame(t testing.TB, mac net.HardwareAddr, src, dst string, proto layers.IPProtocol, sport, dport uint16) []byte {
	t.Helper()
	s, d := net.ParseIP(src), net.ParseIP(dst)
	var l4 gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if s.To4() != nil {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: s.To4(), DstIP: d.To4()}
		nl, ipl = ip, ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: s, DstIP: d}
		nl, ipl = ip, ip
	}
	switch proto {
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(nl)
		l4 = u
	case layers.IPProtocolTCP:
		tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1024}
		tc.SetNetworkLayerForChecksum(nl)
		l4 = tc
	case layers.IPProtocolICMPv4:
		l4 = &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}
	}
	typ := layers.EthernetTypeIPv4
	if s.To4() == nil {
		typ = layers.EthernetTypeIPv6
	}
	return serialize(t, eth(mac, typ), ipl, l4, gopacket.Payload("xdptap test payload"))
}

func arpFrame(t testing.TB, mac, sha net.HardwareAddr, spa, tpa string) []byte {
	t.Helper()
	return serialize(t, eth(mac, layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: sha, SourceProtAddress: net.ParseIP(spa).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(tpa).To4(),
	})
}

// ndFrame builds an ICMPv6 neighbor solicitation (135) or advertisement (136) for target,
// with a source or target link-layer address option naming lladdr, or a router
// advertisement (134).
func ndFrame(t testing.TB, mac net.HardwareAddr, src, target string, typ uint8, lladdr net.HardwareAddr) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP("ff02::1")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	var body gopacket.SerializableLayer
	switch typ {
	case layers.ICMPv6TypeNeighborSolicitation:
		body = &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: lladdr}}}
	case layers.ICMPv6TypeNeighborAdvertisement:
		body = &layers.ICMPv6NeighborAdvertisement{TargetAddress: net.ParseIP(target), Flags: 0x20,
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: lladdr}}}
	default:
		body = &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800,
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: lladdr}}}
	}
	return serialize(t, eth(mac, layers.EthernetTypeIPv6), ip, icmp, body)
}

// counters reads a's counters or fails.
func counters(t testing.TB, a *Attachment) map[string]uint64 {
	t.Helper()
	c, err := a.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// delta returns the counters that changed from before to after, by how much.
func delta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// waitCounters polls a's counters until cond holds or a few seconds passed, and returns
// the last reading.
func waitCounters(t testing.TB, a *Attachment, cond func(map[string]uint64) bool) map[string]uint64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := counters(t, a)
		if cond(c) || time.Now().After(deadline) {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
}
