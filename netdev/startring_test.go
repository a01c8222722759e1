package netdev

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// TestBadInput63StartRingUnpollableFd: StartRing with a kick, call or
// error fd that epoll refuses (a regular file) fails with an error naming
// the ring, which fd and its number, and starts nothing: the ring stays
// stopped, the other ring of the pair keeps its worker, and the same ring
// started with its eventfds carries traffic. Before, the worker logged
// the refused fd, dropped the pair's poller and StartRing reported
// success. (vhost refuses non-eventfds up front, BAD-INPUTS 56; this is
// the netdev layer's own guarantee.)
func TestBadInput63StartRingUnpollableFd(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "notafd"+testutil.Suffix(6)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file := int(f.Fd())
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures())
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)
	base, err := r.fe.GetVringBase(1)
	if err != nil {
		t.Fatal(err)
	}
	// The spec the ring ran with, with eventfds of the test's own
	// (vhost closed the ring's kick at GET_VRING_BASE).
	good := r.dev.ring(1).spec
	good.Base = uint32(base)
	for _, fd := range []*int{&good.Kick, &good.Call, &good.Err} {
		if *fd, err = vhosttest.NewEventfd(); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(*fd)
	}
	for _, which := range []string{"kick", "call", "err"} {
		bad := good
		switch which {
		case "kick":
			bad.Kick = file
		case "call":
			bad.Call = file
		case "err":
			bad.Err = file
		}
		err := r.dev.StartRing(bad)
		if err == nil {
			t.Fatalf("StartRing with a regular file as the %s fd succeeded", which)
		}
		for _, want := range []string{"vring 1", which + " fd " + strconv.Itoa(file)} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("StartRing error %q does not name %q", err, want)
			}
		}
		if r.dev.ring(1).running {
			t.Fatalf("ring 1 runs after StartRing failed (%s fd)", which)
		}
	}
	// Ring 0 still has its worker: a frame from the TAP reaches it.
	r.offerRXExpect(t)
	// The front-end starts the ring again: it carries traffic.
	if err := r.fe.SetVringBase(1, uint32(base)); err != nil {
		t.Fatal(err)
	}
	if err := r.fe.SetVringKick(1); err != nil {
		t.Fatal(err)
	}
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)
}

// offerRXExpect posts RX buffers on ring 0, writes one frame into the TAP
// stand-in and waits for it to land.
func (r *devRig) offerRXExpect(t *testing.T) {
	t.Helper()
	rx := r.fe.Ring(0).Driver
	if _, err := rx.AddChain(nil, []int{2048}); err != nil {
		t.Fatal(err)
	}
	rx.Publish()
	r.fe.Kick(0)
	frame := append(make([]byte, 12), testutil.PatternFrame(80, 3)...)
	if _, err := unix.Write(r.host.peers[0], frame); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.fe.WaitCall(0, 50*time.Millisecond)
		if cs := rx.UsedAll(); len(cs) > 0 {
			if int(cs[0].Len) != len(frame) {
				t.Fatalf("RX used length %d, want %d", cs[0].Len, len(frame))
			}
			return
		}
	}
	t.Fatal("no RX frame reached ring 0 within 5 s")
}

// ring is a copy of ring i's state, read under the control plane's lock.
func (d *Device) ring(i int) ringState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pairs[i/2].rings[i%2]
}
