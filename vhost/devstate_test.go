package vhost_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// stateDev is a NullDevice that carries a state: SaveState returns save,
// LoadState records what it was given (or refuses it with loadErr).
type stateDev struct {
	*vhosttest.NullDevice
	mu      sync.Mutex
	save    *vhost.DeviceState
	loaded  *vhost.DeviceState
	loadErr error
}

func (d *stateDev) SaveState() (*vhost.DeviceState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.save, nil
}

func (d *stateDev) LoadState(st *vhost.DeviceState) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loadErr != nil {
		return d.loadErr
	}
	d.loaded = st
	return nil
}

func (d *stateDev) got() *vhost.DeviceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loaded
}

// sampleState has two frames on two queue pairs.
func sampleState() *vhost.DeviceState {
	return &vhost.DeviceState{
		Features: 1<<32 | 1<<15, MAC: [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}, MTU: 1500, QueuePairs: 2,
		Frames: []vhost.StateFrame{{Pair: 0, Data: bytes.Repeat([]byte{0xaa}, 60)}, {Pair: 1, Data: []byte("second frame")}},
	}
}

// stateHarness serves a stateDev to a front-end that negotiated every
// protocol feature, DEVICE_STATE included; no ring runs.
func stateHarness(t *testing.T, save *vhost.DeviceState) (*harness, *stateDev) {
	t.Helper()
	dev := &stateDev{NullDevice: vhosttest.NewNullDevice(testFeatures, testVrings), save: save}
	h := newHarnessDev(t, hclog.Debug, dev, dev.NullDevice)
	h.negotiate()
	if h.fe.Proto&(1<<vhost.ProtoDeviceState) == 0 {
		t.Fatalf("DEVICE_STATE not offered to a device with state (protocol features %#x)", h.fe.OfferedProto)
	}
	return h, dev
}

func transferState(dir, phase uint32) []byte { return vhosttest.TransferState(dir, phase) }

// saveState runs QEMU's save: the stream read to EOF, then CHECK.
func saveState(t *testing.T, h *harness) ([]byte, uint64) {
	t.Helper()
	data, v, err := h.fe.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	return data, v
}

// loadState runs QEMU's load: the stream written and closed, then CHECK.
func loadState(t *testing.T, h *harness, data []byte) uint64 {
	t.Helper()
	v, err := h.fe.LoadState(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// check sends CHECK_DEVICE_STATE and returns its u64.
func check(t *testing.T, h *harness) uint64 {
	t.Helper()
	v, err := h.fe.CheckState()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDeviceStateRoundTrip saves a state from one session through a real
// pipe and loads it into another: the destination device gets exactly the
// source's state, both CHECKs answer 0, and a second CHECK (no transfer)
// fails.
func TestDeviceStateRoundTrip(t *testing.T) {
	src, _ := stateHarness(t, sampleState())
	data, v := saveState(t, src)
	if v != 0 {
		t.Fatalf("CHECK after save: %d", v)
	}
	if len(data) == 0 {
		t.Fatal("empty state stream")
	}
	dst, dev := stateHarness(t, nil)
	if v := loadState(t, dst, data); v != 0 {
		t.Fatalf("CHECK after load: %d; log:\n%s", v, dst.logs.String())
	}
	if got := dev.got(); !reflect.DeepEqual(got, sampleState()) {
		t.Fatalf("loaded %+v, saved %+v", got, sampleState())
	}
	if !dst.logs.hasLine("device state transferred", "direction=load", "frames=2") {
		t.Fatalf("no log line for the load; log:\n%s", dst.logs.String())
	}
	if v := check(t, dst); v == 0 {
		t.Fatal("CHECK_DEVICE_STATE with no transfer answered 0")
	}
	dst.logged(vhost.ReqCheckDeviceState, "request")
	dst.alive()
}

// badStreams are malformed state streams, each with the error it must be
// refused with.
func badStreams(t *testing.T) map[string]struct {
	b    []byte
	want error
} {
	good, err := vhost.EncodeDeviceState(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tooMany := mod(func(b []byte) []byte {
		// the frame count of a valid stream raised past the limit
		binary.LittleEndian.PutUint32(b[12+8+20+8:], vhost.MaxStateFrames+1)
		return b
	})
	return map[string]struct {
		b    []byte
		want error
	}{
		"empty":           {nil, vhost.ErrStateTruncated},
		"magic":           {mod(func(b []byte) []byte { b[0] = 'X'; return b }), vhost.ErrStateMagic},
		"version":         {mod(func(b []byte) []byte { b[8] = 2; return b }), vhost.ErrStateVersion},
		"truncated-hdr":   {good[:10], vhost.ErrStateTruncated},
		"truncated-frame": {good[:len(good)-20], vhost.ErrStateTruncated},
		"no-end":          {good[:len(good)-8], vhost.ErrStateTruncated},
		"trailing":        {append(append([]byte(nil), good...), 0), vhost.ErrStateTrailing},
		"unknown-section": {mod(func(b []byte) []byte { b[12] = 7; return b }), vhost.ErrStateSection},
		"reserved":        {mod(func(b []byte) []byte { b[12+8+19] = 1; return b }), vhost.ErrStateField},
		"pairs-zero":      {mod(func(b []byte) []byte { b[12+8+16] = 0; b[12+8+17] = 0; return b }), vhost.ErrStateField},
		"frame-pair":      {mod(func(b []byte) []byte { b[12+8+20+8+4] = 9; return b }), vhost.ErrStateField},
		"too-many-frames": {tooMany, vhost.ErrStateTooLarge},
		"oversized":       {append(append([]byte(nil), good...), make([]byte, 5<<20)...), vhost.ErrStateTooLarge},
	}
}

// TestDeviceStateDecodeRefuses: every malformed stream is refused by the
// decoder with its named error, and the encoder refuses a state over the
// limits.
func TestDeviceStateDecodeRefuses(t *testing.T) {
	for name, c := range badStreams(t) {
		if _, err := vhost.DecodeDeviceState(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", name, err, c.want)
		}
	}
	big := &vhost.DeviceState{QueuePairs: 1}
	for range vhost.MaxStateFrames + 1 {
		big.Frames = append(big.Frames, vhost.StateFrame{Data: []byte{1}})
	}
	if _, err := vhost.EncodeDeviceState(big); !errors.Is(err, vhost.ErrStateTooLarge) {
		t.Errorf("encoding %d frames: %v", len(big.Frames), err)
	}
	huge := &vhost.DeviceState{QueuePairs: 1}
	for range 40 {
		huge.Frames = append(huge.Frames, vhost.StateFrame{Data: make([]byte, vhost.MaxStateFrame)})
	}
	if _, err := vhost.EncodeDeviceState(huge); !errors.Is(err, vhost.ErrStateTooLarge) {
		t.Errorf("encoding %d bytes of frames: %v", 40*vhost.MaxStateFrame, err)
	}
}

// TestBadInput61DeviceStateRefused (BAD-INPUTS 61) loads each malformed stream
// through a real pipe: CHECK_DEVICE_STATE fails, the error is logged with
// its name, the device got nothing and no ring started, and the session
// goes on. A state the device itself refuses fails the same way.
func TestBadInput61DeviceStateRefused(t *testing.T) {
	for name, c := range badStreams(t) {
		t.Run(name, func(t *testing.T) {
			h, dev := stateHarness(t, nil)
			before := h.state()
			if v := loadState(t, h, c.b); v == 0 {
				t.Fatal("CHECK_DEVICE_STATE answered 0 for a malformed stream")
			}
			if dev.got() != nil {
				t.Fatal("the device was given a malformed state")
			}
			h.unchanged(before)
			h.logged(vhost.ReqCheckDeviceState, "state")
			if !h.logs.hasLine("device state transfer failed", c.want.Error()) {
				t.Fatalf("no log line names %q; log:\n%s", c.want, h.logs.String())
			}
			h.alive()
		})
	}
	t.Run("device-refuses", func(t *testing.T) {
		good, _ := vhost.EncodeDeviceState(sampleState())
		h, dev := stateHarness(t, nil)
		dev.loadErr = fmt.Errorf("queue pair 1 of 1")
		if v := loadState(t, h, good); v == 0 {
			t.Fatal("CHECK_DEVICE_STATE answered 0 for a state the device refused")
		}
		h.logged(vhost.ReqCheckDeviceState, "state")
	})
}

// TestBadInput61DeviceStateRequests: SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE
// of the wrong size, with the wrong fds, a bad direction or phase, while
// rings run or without the protocol feature are refused with a non-zero
// u64 naming the field, and every fd sent is closed.
func TestBadInput61DeviceStateRequests(t *testing.T) {
	cases := []struct {
		name    string
		req     vhost.Request
		payload []byte
		fds     int
		field   string
	}{
		{"short", vhost.ReqSetDeviceStateFd, make([]byte, 4), 1, "size"},
		{"long", vhost.ReqSetDeviceStateFd, make([]byte, 12), 1, "size"},
		{"no-fd", vhost.ReqSetDeviceStateFd, transferState(0, 0), 0, "fds"},
		{"two-fds", vhost.ReqSetDeviceStateFd, transferState(0, 0), 2, "fds"},
		{"direction", vhost.ReqSetDeviceStateFd, transferState(2, 0), 1, "direction"},
		{"phase", vhost.ReqSetDeviceStateFd, transferState(1, 1), 1, "phase"},
		{"check-payload", vhost.ReqCheckDeviceState, make([]byte, 8), 0, "size"},
		{"check-fd", vhost.ReqCheckDeviceState, nil, 1, "fds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, dev := stateHarness(t, sampleState())
			before := h.state()
			var probes []*probe
			var fds []int
			for range c.fds {
				p := pipeProbe(t)
				probes, fds = append(probes, p), append(fds, p.Fd)
			}
			r, err := h.fe.Call(c.req, 0, c.payload, fds...)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := r.U64(); v&0xff == 0 {
				t.Fatalf("%v answered %#x: accepted", c.req, v)
			}
			for _, p := range probes {
				p.closedByPeer()
			}
			h.logged(c.req, c.field)
			h.unchanged(before)
			if dev.got() != nil {
				t.Fatal("device state changed")
			}
			h.alive()
		})
	}
	t.Run("rings-running", func(t *testing.T) {
		h, _ := stateHarness(t, sampleState())
		h.start(2)
		p := pipeProbe(t)
		r, err := h.fe.Call(vhost.ReqSetDeviceStateFd, 0, transferState(0, 0), p.Fd)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := r.U64(); v&0xff == 0 {
			t.Fatalf("save accepted with rings running (%#x)", v)
		}
		p.closedByPeer()
		h.logged(vhost.ReqSetDeviceStateFd, "phase")
	})
	t.Run("not-acked", func(t *testing.T) {
		h := newHarness(t) // a NullDevice has no state: DEVICE_STATE is not offered
		h.negotiate()
		p := pipeProbe(t)
		if v, err := h.fe.Ack(vhost.ReqSetDeviceStateFd, transferState(0, 0), p.Fd); err != nil || v == 0 {
			t.Fatalf("answer %d, %v", v, err)
		}
		p.closedByPeer()
		h.logged(vhost.ReqSetDeviceStateFd, "protocol_features")
	})
}

// FuzzDecodeDeviceState: whatever the bytes, the decoder returns a state
// within the limits or an error wrapping one of the named ones; a state it
// accepts encodes back to the same bytes.
func FuzzDecodeDeviceState(f *testing.F) {
	good, _ := vhost.EncodeDeviceState(sampleState())
	f.Add(good)
	empty, _ := vhost.EncodeDeviceState(&vhost.DeviceState{QueuePairs: 1})
	f.Add(empty)
	f.Add(good[:len(good)-3])
	f.Add([]byte("VHOSTDST"))
	named := []error{vhost.ErrStateMagic, vhost.ErrStateVersion, vhost.ErrStateTruncated, vhost.ErrStateTooLarge,
		vhost.ErrStateSection, vhost.ErrStateField, vhost.ErrStateTrailing}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := vhost.DecodeDeviceState(b)
		if err != nil {
			for _, e := range named {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("unnamed error %v", err)
		}
		if len(st.Frames) > vhost.MaxStateFrames || st.QueuePairs == 0 {
			t.Fatalf("accepted %d frames, %d queue pairs", len(st.Frames), st.QueuePairs)
		}
		total := 0
		for _, fr := range st.Frames {
			total += len(fr.Data)
			if fr.Pair >= st.QueuePairs || len(fr.Data) == 0 {
				t.Fatalf("accepted frame on pair %d of %d, %d bytes", fr.Pair, st.QueuePairs, len(fr.Data))
			}
		}
		if total > vhost.MaxStateFrameBytes {
			t.Fatalf("accepted %d bytes of frames", total)
		}
		again, err := vhost.EncodeDeviceState(st)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted stream does not encode back to itself (%v)", err)
		}
	})
}

// TestDeviceStateTransferReplaced: a save whose stream nobody reads (2 MiB,
// far more than a pipe holds) is ended by the next SET_DEVICE_STATE_FD,
// which then works; a transfer under way when the front-end leaves ends with
// the session (the fd-leak check of TestMain sees its fd closed).
func TestDeviceStateTransferReplaced(t *testing.T) {
	big := &vhost.DeviceState{QueuePairs: 1}
	for range 200 {
		big.Frames = append(big.Frames, vhost.StateFrame{Data: bytes.Repeat([]byte{7}, 10000)})
	}
	h, dev := stateHarness(t, big)
	p := pipeProbe(t)
	r, err := h.fe.Call(vhost.ReqSetDeviceStateFd, 0, transferState(0, 0), p.Fd)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.U64(); v != 0x100 {
		t.Fatalf("save: %#x", v)
	}
	good, _ := vhost.EncodeDeviceState(sampleState())
	if v := loadState(t, h, good); v != 0 {
		t.Fatalf("load after an abandoned save: CHECK %d", v)
	}
	p.closedByPeer() // the abandoned save's fd
	if !reflect.DeepEqual(dev.got(), sampleState()) {
		t.Fatal("the load after an abandoned save was not applied")
	}
	q := pipeProbe(t)
	if _, err := h.fe.Call(vhost.ReqSetDeviceStateFd, 0, transferState(0, 0), q.Fd); err != nil {
		t.Fatal(err)
	}
	h.fe.Close()
	q.closedByPeer()
}
