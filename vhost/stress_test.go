package vhost_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// settledFdCount waits until the process's fd count stops changing (the
// server tears a session down after the front-end has gone) and returns it.
func settledFdCount() int {
	n := privtest.OpenFds()
	stable := time.Now()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		if m := privtest.OpenFds(); m != n {
			n, stable = m, time.Now()
		} else if time.Since(stable) > 50*time.Millisecond {
			break
		}
	}
	return n
}

// waitFdCount waits up to 2 s for the fd count to come back to want.
func waitFdCount(t *testing.T, want int, what string) {
	t.Helper()
	if !waitFor(2*time.Second, func() bool { return privtest.OpenFds() == want }) {
		t.Fatalf("%s: %d fds open, %d at the start", what, privtest.OpenFds(), want)
	}
}

// waitMaps waits up to 2 s for no mapping of memfds called name to be left.
func waitMaps(t *testing.T, name, what string) {
	t.Helper()
	if !waitFor(2*time.Second, func() bool { return vhosttest.MapsCount(name) == 0 }) {
		t.Fatalf("%s: %d mappings of %s left", what, vhosttest.MapsCount(name), name)
	}
}

// malformed builds one bad message of a kind picked by rng: the header,
// the payload, how many copies of fd to attach, and whether the back-end
// must close the connection for it (else it must answer a failure
// REPLY_ACK, or may do either when mayClose).
func malformed(rng *rand.Rand, fe *vhosttest.FrontEnd) (h vhosttest.Header, p []byte, nfds int, mustClose, mayClose bool) {
	need := uint32(vhosttest.FlagVersion | vhosttest.FlagNeedReply)
	fdless := []vhost.Request{vhost.ReqSetFeatures, vhost.ReqSetOwner, vhost.ReqSetVringNum, vhost.ReqSetVringBase,
		vhost.ReqSetVringAddr, vhost.ReqSetVringEnable, vhost.ReqSetStatus, vhost.ReqNetSetMTU, vhost.ReqSetProtocolFeatures}
	sizes := map[vhost.Request]int{vhost.ReqSetFeatures: 8, vhost.ReqSetOwner: 0, vhost.ReqSetVringNum: 8,
		vhost.ReqSetVringBase: 8, vhost.ReqSetVringAddr: 40, vhost.ReqSetVringEnable: 8, vhost.ReqSetStatus: 8,
		vhost.ReqNetSetMTU: 8, vhost.ReqSetProtocolFeatures: 8}
	switch k := rng.IntN(10); k {
	case 0: // extra fds
		r := fdless[rng.IntN(len(fdless))]
		p = make([]byte, sizes[r])
		return vhosttest.Header{Req: uint32(r), Flags: need, Size: uint32(len(p))}, p, 1 + rng.IntN(3), false, false
	case 1: // wrong size
		r := fdless[rng.IntN(len(fdless))]
		n := rng.IntN(64)
		if n == sizes[r] {
			n++
		}
		p = make([]byte, n)
		return vhosttest.Header{Req: uint32(r), Flags: need, Size: uint32(n)}, p, 0, false, false
	case 2: // bad ring index
		r := []vhost.Request{vhost.ReqSetVringNum, vhost.ReqSetVringBase, vhost.ReqSetVringEnable}[rng.IntN(3)]
		p = vhosttest.VringState(testVrings+rng.Uint32N(1<<31), 1)
		return vhosttest.Header{Req: uint32(r), Flags: need, Size: 8}, p, 0, false, false
	case 3: // bad kick/call/err u64
		r := []vhost.Request{vhost.ReqSetVringKick, vhost.ReqSetVringCall, vhost.ReqSetVringErr}[rng.IntN(3)]
		p = vhosttest.U64(testVrings + rng.Uint64N(200))
		return vhosttest.Header{Req: uint32(r), Flags: need, Size: 8}, p, rng.IntN(2), false, false
	case 4: // bad regions
		var rs []vhosttest.RegionDesc
		switch rng.IntN(4) {
		case 0:
			rs = []vhosttest.RegionDesc{{GPA: ^uint64(0) - 10, Size: 4096, UserAddr: 1 << 40}}
		case 1:
			rs = []vhosttest.RegionDesc{{Size: 0, UserAddr: 1 << 40}}
		case 2:
			rs = []vhosttest.RegionDesc{{Size: 1 << 20, UserAddr: 1 << 40}, {GPA: 4096, Size: 1 << 20, UserAddr: 2 << 40}}
		case 3:
			rs = []vhosttest.RegionDesc{{Size: 64 << 20, UserAddr: 1 << 40}} // longer than the fd
		}
		p = vhosttest.MemTable(rs...)
		return vhosttest.Header{Req: uint32(vhost.ReqSetMemTable), Flags: need, Size: uint32(len(p))}, p, len(rs), false, false
	case 5: // bad flags: a framing fault closes
		flags := []uint32{0, 2, 3, 1 | vhosttest.FlagReply, 1 | 1<<(4+rng.IntN(28))}[rng.IntN(5)]
		return vhosttest.Header{Req: uint32(vhost.ReqSetFeatures), Flags: flags, Size: 8}, make([]byte, 8), rng.IntN(2), true, false
	case 6: // unknown codes
		code := []uint32{0, 44 + rng.Uint32N(1000), rng.Uint32()}[rng.IntN(3)]
		if code >= 1 && code <= 43 {
			code = 0
		}
		p = make([]byte, rng.IntN(32))
		return vhosttest.Header{Req: code, Flags: need, Size: uint32(len(p))}, p, rng.IntN(2), false, false
	case 7: // a GET_* with a payload: no failure answer, closes
		return vhosttest.Header{Req: uint32(vhost.ReqGetFeatures), Flags: need, Size: 8}, make([]byte, 8), 0, true, false
	case 8: // too many fds
		return vhosttest.Header{Req: uint32(vhost.ReqSetVringCall), Flags: need, Size: 8}, vhosttest.U64(0), 9 + rng.IntN(12), false, false
	default: // bad values
		switch rng.IntN(4) {
		case 0:
			p = vhosttest.VringState(0, 3) // not a power of two
			return vhosttest.Header{Req: uint32(vhost.ReqSetVringNum), Flags: need, Size: 8}, p, 0, false, false
		case 1:
			p = vhosttest.VringState(1, 70000)
			return vhosttest.Header{Req: uint32(vhost.ReqSetVringBase), Flags: need, Size: 8}, p, 0, false, false
		case 2:
			p = vhosttest.VringAddr(1, 0, 0x10, 0x20, 0x30, 0)
			return vhosttest.Header{Req: uint32(vhost.ReqSetVringAddr), Flags: need, Size: 40}, p, 0, false, false
		default:
			p = vhosttest.U64(fe.Features | 1<<63)
			return vhosttest.Header{Req: uint32(vhost.ReqSetFeatures), Flags: need, Size: 8}, p, 0, false, false
		}
	}
}

func TestMalformedFlood(t *testing.T) {
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	l := newListening(t, dev, dev)
	name := uniqueName("flood")
	fdBase := settledFdCount()
	goBase := runtime.NumGoroutine()

	rng := rand.New(rand.NewPCG(1, 2))
	probe, err := vhosttest.NewMemfd(name, 1<<20) // the fd every message carries
	if err != nil {
		t.Fatal(err)
	}
	fdBase++ // probe
	var fe *vhosttest.FrontEnd
	connect := func() {
		if fe != nil {
			fe.Close()
		}
		fe = l.dial(t, name)
		if err := fe.Start(testFeatures, allProto, 1, 64, vhosttest.Layout{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	connect()
	count := 10000
	if testing.Short() {
		count = 2000
	}
	closes := 0
	for i := 0; i < count; i++ {
		h, p, nfds, mustClose, mayClose := malformed(rng, fe)
		fds := make([]int, nfds)
		for j := range fds {
			fds[j] = probe
		}
		if err := fe.SendRaw(h, p, fds); err != nil {
			t.Fatalf("message %d (%+v): %v", i, h, err)
		}
		r, err := fe.ReadReply()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET):
			if !mustClose && !mayClose {
				t.Fatalf("message %d (%+v, %d fds): connection closed, want a failure reply", i, h, nfds)
			}
			closes++
			connect()
		case err != nil:
			t.Fatalf("message %d (%+v): %v", i, h, err)
		case mustClose:
			t.Fatalf("message %d (%+v): answered %+v, want the connection closed", i, h, r)
		default:
			if v, err := r.U64(); err != nil || v == 0 || r.Req != vhost.Request(h.Req) {
				t.Fatalf("message %d (%+v): reply %+v, want a failure REPLY_ACK", i, h, r)
			}
		}
	}
	// The device is still the one a well-formed front-end set up.
	if st := dev.State(); len(st.Running) != 1 || st.Regions != 1 {
		t.Fatalf("device after the flood: %+v", st)
	}
	fe.Close()
	// A well-formed front-end connects and negotiates.
	good := l.dial(t, name)
	if err := good.Start(testFeatures, allProto, 2, 256, vhosttest.Layout{Size: 4 << 20}); err != nil {
		t.Fatalf("well-formed front-end after the flood: %v", err)
	}
	good.Close()
	unix.Close(probe)
	fdBase--
	waitFdCount(t, fdBase, "after the flood")
	waitMaps(t, name, "after the flood")
	if !waitFor(2*time.Second, func() bool { return runtime.NumGoroutine() <= goBase }) {
		t.Fatalf("goroutines: %d, %d at the start", runtime.NumGoroutine(), goBase)
	}
	t.Logf("%d malformed messages, %d connections closed by the server", count, closes)
}

func TestReconnectCycles(t *testing.T) {
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	l := newListening(t, dev, dev)
	name := uniqueName("cycle")
	cycles := 1000
	if testing.Short() {
		cycles = 200
	}
	var fdBase, goBase int
	for i := 0; i < cycles; i++ {
		if i == 1 {
			// Counted after the first cycle: lazily created runtime and
			// poller state is in place by then.
			fdBase, goBase = settledFdCount(), runtime.NumGoroutine()
		}
		fe := l.dial(t, name)
		if err := fe.Start(testFeatures, allProto, 2, 256, vhosttest.Layout{Size: 8 << 20}, vhosttest.Layout{GPA: 1 << 32, Size: 1 << 20}); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		fe.Close()
		if i%100 == 99 {
			waitFdCount(t, fdBase, "after cycles")
		}
	}
	waitFdCount(t, fdBase, "after cycles")
	waitMaps(t, name, "after cycles")
	if !waitFor(2*time.Second, func() bool { return runtime.NumGoroutine() <= goBase }) {
		t.Fatalf("goroutines: %d, %d after the first cycle", runtime.NumGoroutine(), goBase)
	}
}

// TestRejectLogRateLimitAcrossReconnects: the rejection log is
// rate-limited per server, not per connection, so a front-end that
// reconnects after every few bad messages cannot flood the log.
func TestRejectLogRateLimitAcrossReconnects(t *testing.T) {
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	l := newListening(t, dev, dev)
	t0 := time.Now()
	const conns, perConn = 40, 5
	for i := 0; i < conns; i++ {
		fe := l.dial(t, "ratelimit")
		for j := 0; j < perConn; j++ {
			if _, err := fe.Ack(vhost.Request(99), nil); err != nil {
				t.Fatal(err)
			}
		}
		fe.Close()
	}
	windows := int(time.Since(t0)/time.Second) + 2 // windows the run can touch
	n := strings.Count(l.logs.String(), "rejected message")
	if n > 10*windows {
		t.Fatalf("%d rejection lines for %d rejected messages in %v: the rate limit does not hold across connections", n, conns*perConn, time.Since(t0))
	}
}
