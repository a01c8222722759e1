package virtqueue

// Notification suppression both ways: the guest's event hints, arming the kick on an
// empty ring, when a used-buffer notification is due (BAD-INPUTS section D, items 40
// and 44).

import (
	"testing"
)

func TestBadInput40EventHintsAnyValue(t *testing.T) {
	// With EVENT_IDX, used_event is a hint: whatever it holds, NeedsNotify
	// answers from 16-bit arithmetic and never panics; at most one call is
	// spurious or missing. Table: (used_event, pushes) -> notify.
	for _, tc := range []struct {
		name      string
		usedEvent uint16
		push      int
		want      bool
	}{
		{"event at old", 1, 1, true},    // first push passes event 1? old=1,new=2: 1 in [1,2)
		{"event in window", 2, 3, true}, // old=1,new=4
		{"event at new", 4, 3, false},   // not passed yet
		{"event far ahead", 0x8000, 3, false},
		{"event behind", 0, 3, false},
		{"event max", 0xffff, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{eventIdx: true})
			for range 4 {
				r.drv.AddChain([][]byte{[]byte("a")}, nil)
			}
			r.drv.Publish()
			cs, _ := r.pop(4)
			// First answer after start is always yes (nothing signalled yet).
			r.q.PushBatch([]Used{{Head: cs[0].Head}})
			if !r.q.NeedsNotify() {
				t.Fatal("first NeedsNotify = false")
			}
			r.drv.SetUsedEvent(tc.usedEvent)
			for i := 1; i <= tc.push; i++ {
				r.q.PushBatch([]Used{{Head: cs[i%4].Head}})
			}
			if got := r.q.NeedsNotify(); got != tc.want {
				t.Fatalf("NeedsNotify = %v, want %v", got, tc.want)
			}
			// Asking again without pushing: nothing new to signal.
			if r.q.NeedsNotify() {
				t.Fatal("second NeedsNotify without push = true")
			}
		})
	}
}

func TestBadInput44EmptyRingArmsKick(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		r := newTestRing(t, 8, ringOpts{eventIdx: eventIdx})
		cs := NewChains(4, 4)
		r.q.DisableNotify()
		if n, err := r.q.PopBatch(cs); n != 0 || err != nil {
			t.Fatalf("eventIdx=%v: PopBatch on empty ring = %d, %v", eventIdx, n, err)
		}
		if r.q.EnableNotify() {
			t.Fatalf("eventIdx=%v: EnableNotify on empty ring reports work", eventIdx)
		}
		// Armed: the guest's next publish kicks.
		r.drv.AddChain(nil, []int{64})
		if !r.drv.Publish() {
			t.Fatalf("eventIdx=%v: guest not asked to kick after EnableNotify", eventIdx)
		}
	}
}

func TestNotifySuppression(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		r := newTestRing(t, 8, ringOpts{eventIdx: eventIdx})
		cs := NewChains(4, 4)
		// Polling: kicks suppressed.
		r.q.EnableNotify()
		r.drv.AddChain([][]byte{[]byte("a")}, nil)
		if !r.drv.Publish() {
			t.Fatalf("eventIdx=%v: first publish after EnableNotify did not kick", eventIdx)
		}
		r.q.DisableNotify()
		r.q.PopBatch(cs)
		r.drv.AddChain([][]byte{[]byte("b")}, nil)
		if r.drv.Publish() {
			t.Fatalf("eventIdx=%v: kick while notifications disabled", eventIdx)
		}
		// Lost-wakeup race: work arrived before EnableNotify re-checked.
		if !r.q.EnableNotify() {
			t.Fatalf("eventIdx=%v: EnableNotify missed pending work", eventIdx)
		}
		if n, _ := r.q.PopBatch(cs); n != 1 {
			t.Fatalf("eventIdx=%v: popped %d", eventIdx, n)
		}
		if r.q.EnableNotify() {
			t.Fatalf("eventIdx=%v: EnableNotify reports work on empty ring", eventIdx)
		}
	}
}

func TestNeedsNotifyNoInterruptFlag(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.AddChain([][]byte{[]byte("b")}, nil)
	r.drv.Publish()
	cs, _ := r.pop(2)
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	if !r.q.NeedsNotify() {
		t.Fatal("NeedsNotify = false without NO_INTERRUPT")
	}
	r.drv.SetNoInterrupt(true)
	r.q.PushBatch([]Used{{Head: cs[1].Head}})
	if r.q.NeedsNotify() {
		t.Fatal("NeedsNotify = true with NO_INTERRUPT")
	}
}

func TestNeedsNotifyAfterIndexWrap(t *testing.T) {
	// More than 32K pushes without asking: the next answer is yes.
	r := newTestRing(t, 8, ringOpts{eventIdx: true})
	r.drv.AddChain([][]byte{[]byte("a")}, nil)
	r.drv.Publish()
	cs, _ := r.pop(1)
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	r.q.NeedsNotify()
	r.drv.SetUsedEvent(0)
	for range 40000 {
		r.q.PushBatch([]Used{{Head: cs[0].Head}})
	}
	if !r.q.NeedsNotify() {
		t.Fatal("NeedsNotify = false after the used index wrapped past the last signal")
	}
}
