package netdev

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// stateProto is what a migrating front-end negotiates.
const stateProto = 1<<vhost.ProtoReplyAck | 1<<vhost.ProtoMQ | 1<<vhost.ProtoDeviceState

// stateRig is a device over a fake host served to a front-end that
// negotiated DEVICE_STATE; no ring runs yet.
func stateRig(t *testing.T) *devRig {
	t.Helper()
	host := newFakeHost(t, 1)
	dev, err := newDevice(Config{QueuePairs: 1, TAP: "fake"}, hclog.NewNullLogger(), host)
	if err != nil {
		t.Fatal(err)
	}
	fe := serveFE(t, dev)
	if err := fe.Negotiate(dev.Features()|1<<vhost.FeatProtocolFeatures, stateProto); err != nil {
		t.Fatal(err)
	}
	if fe.Proto&(1<<vhost.ProtoDeviceState) == 0 {
		t.Fatalf("DEVICE_STATE not offered (%#x)", fe.OfferedProto)
	}
	return &devRig{dev: dev, host: host, fe: fe}
}

// startRings sets the memory table up and starts both rings.
func (r *devRig) startRings(t *testing.T) {
	t.Helper()
	if err := r.fe.SetMemTable(vhosttest.Layout{Size: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := r.fe.SetupRings(2, 256); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := r.fe.Enable(i, true); err != nil {
			t.Fatal(err)
		}
	}
}

// hostFrame is frame i as the host sends it to the guest: a zero virtio-net
// header, then a patterned frame.
func hostFrame(i int) []byte {
	return append(make([]byte, 12), testutil.PatternFrame(60+7*i, byte(i))...)
}

// guestReceive offers n RX buffers and returns the frames the guest gets
// until want arrived or 5 s passed.
func (r *devRig) guestReceive(t *testing.T, n, want int) [][]byte {
	t.Helper()
	rx := r.fe.Ring(0).Driver
	for i := 0; i < n; i++ {
		if _, err := rx.AddChain(nil, []int{2048}); err != nil {
			t.Fatal(err)
		}
	}
	if rx.Publish() {
		r.fe.Kick(0)
	}
	var got [][]byte
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		r.fe.WaitCall(0, 100*time.Millisecond)
		for _, c := range rx.UsedAll() {
			got = append(got, c.Written)
		}
	}
	return got
}

// checkFrames asserts got are the host frames first..first+len(got)-1, in
// order, header included (num_buffers 1).
func checkFrames(t *testing.T, got [][]byte, first, want int) {
	t.Helper()
	if len(got) != want {
		t.Fatalf("%d frames reached the guest, want %d", len(got), want)
	}
	for i, g := range got {
		w := hostFrame(first + i)
		binary.LittleEndian.PutUint16(w[10:], 1)
		if !bytes.Equal(g, w) {
			t.Fatalf("guest frame %d: %d bytes %x..., want frame %d (%d bytes)", i, len(g), g[:min(len(g), 20)], first+i, len(w))
		}
	}
}

// TestStateCarriesFramesAfterStop: frames that reach the source's TAP
// after its rings stopped (GET_VRING_BASE) travel in the device state and
// come out of the destination guest's RX ring, in order and intact, before
// a frame that reached the destination's own TAP first. The source keeps
// them as well: restarted (a failed migration), it delivers them to its
// own guest.
func TestStateCarriesFramesAfterStop(t *testing.T) {
	const n = 20
	src := stateRig(t)
	src.startRings(t)
	checkFrames(t, src.guestReceive(t, 4, 0), 0, 0)
	base := [2]uint16{}
	for i := range base {
		b, err := src.fe.GetVringBase(i)
		if err != nil {
			t.Fatal(err)
		}
		base[i] = b
	}
	for i := 0; i < n; i++ {
		if _, err := unix.Write(src.host.peers[0], hostFrame(i)); err != nil {
			t.Fatal(err)
		}
	}
	data, v, err := src.fe.SaveState()
	if err != nil || v != 0 {
		t.Fatalf("save: CHECK %d, %v", v, err)
	}
	st, err := vhost.DecodeDeviceState(data)
	if err != nil || len(st.Frames) != n {
		t.Fatalf("saved state: %v, %d frames", err, len(st.Frames))
	}

	dst := stateRig(t)
	if v, err := dst.fe.LoadState(data); err != nil || v != 0 {
		t.Fatalf("load: CHECK %d, %v", v, err)
	}
	// Held frames go first, before what the TAP has.
	if _, err := unix.Write(dst.host.peers[0], hostFrame(n)); err != nil {
		t.Fatal(err)
	}
	dst.startRings(t)
	checkFrames(t, dst.guestReceive(t, 64, n+1), 0, n+1)
	if s := dst.dev.Stats()[0].Values; s["rx_packets"] != n+1 {
		t.Errorf("destination rx_packets %d, want %d", s["rx_packets"], n+1)
	}

	// The source restarted: its guest gets the same frames.
	for i := range base {
		if err := src.fe.SetVringBase(i, uint32(base[i])); err != nil {
			t.Fatal(err)
		}
		if err := src.fe.SetVringKick(i); err != nil {
			t.Fatal(err)
		}
	}
	got := src.guestReceive(t, n, n)
	checkFrames(t, got, 0, n)
}

// TestLoadStateRefusesFramesItCannotTake: a state whose frames do not fit
// this device (a queue pair it lacks, a frame shorter than the virtio-net
// header) is refused whole: no frame is held.
func TestLoadStateRefusesFramesItCannotTake(t *testing.T) {
	dev, err := newDevice(Config{QueuePairs: 1, TAP: "fake"}, hclog.NewNullLogger(), newFakeHost(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	good := vhost.StateFrame{Data: hostFrame(0)}
	for name, st := range map[string]*vhost.DeviceState{
		"pair":  {QueuePairs: 2, Frames: []vhost.StateFrame{good, {Pair: 1, Data: hostFrame(1)}}},
		"short": {QueuePairs: 1, Frames: []vhost.StateFrame{good, {Data: []byte{1, 2, 3}}}},
	} {
		if err := dev.LoadState(st); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if n := len(dev.pairs[0].rx.pending()); n != 0 {
			t.Errorf("%s: %d frames held after a refused state", name, n)
		}
	}
	if err := dev.LoadState(&vhost.DeviceState{QueuePairs: 1, Frames: []vhost.StateFrame{good}}); err != nil {
		t.Fatal(err)
	}
	dev.Reset()
	if n := len(dev.pairs[0].rx.pending()); n != 0 {
		t.Errorf("%d frames held after a reset", n)
	}
}
