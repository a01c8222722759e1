package netdev

import (
	"bytes"
	"fmt"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/tap"
	"github.com/vhostd/vhostd/vhost"
	"golang.org/x/sys/unix"
)

// The device's state across a migration (vhost.StateMigrator,
// VHOST_USER_PROTOCOL_F_DEVICE_STATE). Besides the negotiated features, MAC,
// MTU and queue pairs, it carries the frames that reached the source's TAP
// after its rings stopped: QEMU stops the rings (GET_VRING_BASE) before it
// saves the device, and whatever the host sends the guest meanwhile waits
// in the TAP queues. SaveState reads it out (bounded by
// vhost.MaxStateFrames and vhost.MaxStateFrameBytes), LoadState hands it to
// the destination's queue pairs, and each pair delivers its frames to the
// guest before anything from its TAP once its RX ring runs (rxpath.go
// read). The frames are kept, as held frames, on the source as well: if
// the migration fails and the source's rings start again, its guest gets
// them there. A reset (disconnect) drops held frames.

// maxHeldFrame is the largest frame a TAP read gives: header and a GSO
// frame.
const maxHeldFrame = maxGSOFrame + tap.VnetHdrLen

// SaveState implements vhost.StateMigrator. vhost calls it with every ring
// stopped: the workers do not read the TAPs.
func (d *Device) SaveState() (*vhost.DeviceState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &vhost.DeviceState{Features: d.acked, MTU: d.mtu, QueuePairs: uint16(len(d.pairs))}
	copy(st.MAC[:], d.cfg.MAC)
	budget := heldBudget{frames: vhost.MaxStateFrames, bytes: vhost.MaxStateFrameBytes}
	buf := make([]byte, maxHeldFrame)
	var left int
	for _, p := range d.pairs {
		p.paused(func() {
			held := append([][]byte(nil), budget.keep(p.rx.pending())...)
			held, full := p.drainTAP(held, &budget, buf)
			if full {
				left++
			}
			p.rx.hold(held)
			for _, f := range held {
				st.Frames = append(st.Frames, vhost.StateFrame{Pair: uint16(p.index), Data: f})
			}
		})
	}
	d.log.Info("device state saved", "frames", len(st.Frames), "bytes", vhost.MaxStateFrameBytes-budget.bytes,
		"queues_left_with_frames", left)
	return st, nil
}

// heldBudget is what a state may still carry.
type heldBudget struct{ frames, bytes int }

// take reports whether a frame of n bytes fits, and counts it if so.
func (b *heldBudget) take(n int) bool {
	if b.frames == 0 || n > b.bytes {
		return false
	}
	b.frames--
	b.bytes -= n
	return true
}

// keep returns the leading frames that fit.
func (b *heldBudget) keep(frames [][]byte) [][]byte {
	for i, f := range frames {
		if !b.take(len(f)) {
			return frames[:i]
		}
	}
	return frames
}

// drainTAP reads what waits in the pair's TAP queue, without blocking, as
// long as the budget can take a frame of any size; it reports whether it
// stopped with frames possibly left. Control plane, workers paused.
func (p *pair) drainTAP(held [][]byte, b *heldBudget, buf []byte) ([][]byte, bool) {
	q := p.tapQueue()
	if q == nil {
		return held, false
	}
	for {
		if b.frames == 0 || b.bytes < len(buf) {
			return held, readable(q.Fd())
		}
		n, errno := rawio.Read(q.Fd(), buf)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || n <= 0 {
			return held, false // EAGAIN: empty; anything else: nothing more to read
		}
		b.take(n)
		held = append(held, bytes.Clone(buf[:n]))
	}
}

// LoadState implements vhost.StateMigrator: the frames are checked against
// this device first, and nothing is applied if one does not fit.
func (d *Device) LoadState(st *vhost.DeviceState) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	perPair := make([][][]byte, len(d.pairs))
	for i, f := range st.Frames {
		if int(f.Pair) >= len(d.pairs) {
			return fmt.Errorf("frame %d is for queue pair %d, this device has %d", i, f.Pair, len(d.pairs))
		}
		if len(f.Data) < tap.VnetHdrLen || len(f.Data) > maxHeldFrame {
			return fmt.Errorf("frame %d: %d bytes, a TAP frame has %d to %d", i, len(f.Data), tap.VnetHdrLen, maxHeldFrame)
		}
		perPair[f.Pair] = append(perPair[f.Pair], f.Data)
	}
	for i, p := range d.pairs {
		p.paused(func() { p.rx.hold(perPair[i]) })
	}
	d.log.Info("device state loaded", "frames", len(st.Frames), "source_features", FeatureString(st.Features),
		"source_mtu", st.MTU, "source_queue_pairs", st.QueuePairs)
	return nil
}

// dropHeld forgets the frames held for the guest (reset, disconnect).
// d.mu held.
func (d *Device) dropHeld() {
	n := 0
	for _, p := range d.pairs {
		p.paused(func() {
			n += len(p.rx.pending())
			p.rx.hold(nil)
		})
	}
	if n > 0 {
		d.log.Info("held frames dropped: front-end gone or device reset", "frames", n)
	}
}

// hold sets the frames to deliver before any read from the TAP; pending
// returns those not delivered yet. Control plane, workers paused.
func (r *rxPath) hold(frames [][]byte) { r.held, r.heldNext = frames, 0 }

func (r *rxPath) pending() [][]byte { return r.held[r.heldNext:] }

// readHeld puts the next held frame into s as a TAP read would: the
// chain's buffers first, the rest into the overflow buffer unless the
// chain is whole, the size read being what was stored. TAP side; it
// allocates nothing.
func (r *rxPath) readHeld(s *rxSlot, whole bool) int {
	f := r.held[r.heldNext]
	n := scatter(s.chain.In, f)
	if !whole {
		n += copy(r.overflow, f[n:])
	}
	r.heldNext++
	if r.heldNext == len(r.held) {
		r.held, r.heldNext = nil, 0
	}
	return n
}

// read fills s with the next frame: a held one first, else one from the
// TAP. TAP side.
func (r *rxPath) read(q *tap.Queue, s *rxSlot, whole bool) (int, unix.Errno) {
	if r.held != nil {
		r.size[0] = r.readHeld(s, whole)
		return 1, 0
	}
	return q.ReadBatch(r.frame[:], r.size[:])
}

var _ vhost.StateMigrator = (*Device)(nil)
