package virtqueue

import (
	"math/rand/v2"
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// TestPackedNeedsNotifyReference checks NeedsNotify against a reference
// model over free-running slot counters: with DESC the device calls iff
// the driver's event position lies among the slots used since the last
// answer; DISABLE never, ENABLE always; the first answer and one after
// more than a ring of slots always yes. Random batch sizes, chain lengths
// and event positions, ring sizes 8, 256 and 300, many laps.
func TestPackedNeedsNotifyReference(t *testing.T) {
	for _, size := range []uint16{8, 256, 300} {
		r := newPackedRing(t, size, ringOpts{eventIdx: true})
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		cs, used := NewChains(64, 8), make([]Used, 0, 64)
		var total uint64 // free-running: slots used by the device
		last, first := total, true
		yes := 0
		for round := range 3000 {
			for k := rng.IntN(int(size)/4 + 2); k > 0; k-- {
				out := make([][]byte, 1+rng.IntN(3))
				for j := range out {
					out[j] = []byte{1}
				}
				if _, err := r.drv.AddChain(out, nil); err != nil {
					break
				}
			}
			r.drv.Publish()
			n, err := r.q.PopBatch(cs)
			if err != nil {
				t.Fatal(err)
			}
			used = used[:0]
			for i := range cs[:n] {
				used = append(used, Used{Head: cs[i].Head})
				o, _ := cs[i].Descs()
				total += uint64(o)
			}
			r.q.PushBatch(used)
			r.drv.UsedAll()
			// The driver's event: a free-running target near the window.
			span := int64(total - last)
			ev := int64(last) - int64(size)/2 + rng.Int64N(span+int64(size))
			ev = max(ev, 0)
			mode := []uint16{vqdriver.EventDesc, vqdriver.EventDesc, vqdriver.EventEnable, vqdriver.EventDisable}[rng.IntN(4)]
			r.drv.SetDriverEvent(packedPos(uint64(ev), size), mode)
			want := false
			switch {
			case mode == vqdriver.EventDisable:
			case mode == vqdriver.EventEnable, first, total-last >= uint64(size):
				want = true
			default:
				want = uint64(ev) >= last && uint64(ev) < total
			}
			if got := r.q.NeedsNotify(); got != want {
				t.Fatalf("size %d round %d: mode %d event %d window [%d, %d): NeedsNotify %v", size, round, mode, ev, last, total, got)
			}
			if want {
				yes++
			}
			last, first = total, false
		}
		if laps := total / uint64(size); laps < 20 || yes < 300 {
			t.Fatalf("size %d: %d laps, %d notifications", size, laps, yes)
		}
	}
}

// packedPos encodes the free-running slot counter c as a packed ring
// position: c mod size, and the wrap counter, 1 on the first lap.
func packedPos(c uint64, size uint16) uint16 {
	pos := uint16(c % uint64(size))
	if (c/uint64(size))%2 == 0 {
		pos |= vqdriver.WrapBit
	}
	return pos
}

// TestPackedNotifySuppression: the device area EnableNotify and
// DisableNotify write, as the driver's kick decision sees it, with and
// without EVENT_IDX; EnableNotify reports work that raced in, and the
// driver's DISABLE suppresses calls.
func TestPackedNotifySuppression(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		r := newPackedRing(t, 8, ringOpts{eventIdx: eventIdx})
		if r.q.EnableNotify() {
			t.Fatal("empty ring reported work")
		}
		add := func() bool {
			r.drv.AddChain([][]byte{{1}}, nil)
			return r.drv.Publish()
		}
		if !add() {
			t.Fatalf("eventIdx %v: no kick after EnableNotify", eventIdx)
		}
		r.q.DisableNotify()
		if add() {
			t.Fatalf("eventIdx %v: kick after DisableNotify", eventIdx)
		}
		if !r.q.EnableNotify() {
			t.Fatalf("eventIdx %v: EnableNotify missed available chains", eventIdx)
		}
		cs, _ := r.pop(8)
		if len(cs) != 2 {
			t.Fatalf("popped %d", len(cs))
		}
		if r.q.EnableNotify() {
			t.Fatal("EnableNotify on drained ring reported work")
		}
		if off, flags := r.drv.DeviceEvent(); eventIdx && (flags != vqdriver.EventDesc || off != r.q.NextAvail()) {
			t.Fatalf("device area %#x/%d, want DESC at %#x", off, flags, r.q.NextAvail())
		} else if !eventIdx && flags != vqdriver.EventEnable {
			t.Fatalf("device area flags %d, want ENABLE", flags)
		}
		if !add() {
			t.Fatalf("eventIdx %v: no kick after re-enable", eventIdx)
		}
		r.q.PushBatch([]Used{{Head: cs[0].Head}})
		r.drv.DisableInterrupts()
		if r.q.NeedsNotify() {
			t.Fatal("call despite DISABLE")
		}
		if r.drv.EnableInterrupts() != true {
			t.Fatal("driver missed a used descriptor")
		}
		r.drv.UsedAll()
		if r.drv.EnableInterrupts() {
			t.Fatal("driver sees a used descriptor on a drained ring")
		}
		r.q.PushBatch([]Used{{Head: cs[1].Head}})
		if !r.q.NeedsNotify() {
			t.Fatal("no call after EnableInterrupts")
		}
	}
}
