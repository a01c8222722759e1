package netdev

// The ring-state model test. A reference model of both rings of one queue
// pair (the guest's view: what it posted at which avail position, what it
// got back) drives a real Device through random interleavings of guest
// posts and reaps, TAP frames both ways, worker polls and sleeps,
// GET_VRING_BASE and restart, memory-table changes, enable/disable, and a
// backend crash restarted from the used index as QEMU does. After every
// step it checks the ring-state invariant (doc.go):
//
//   - every used entry is the head the guest posted at that position: chains
//     come back in the order they were popped, each at most once;
//   - a stopped ring reports as its base exactly its used index: nothing
//     popped is left behind, nothing is rewound that was completed;
//   - a guest that armed its interrupt and has used entries it has not seen
//     has been signalled before the worker sleeps or the ring stops;
//   - frames cross intact, in order, at most once (TX: again only for chains
//     in flight at a crash), and every TX chain is written or counted as
//     dropped, never both, never neither.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vhostd/vhostd/internal/testutil"
)

// modelSteps is a random step sequence of n steps.
func modelSteps(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 2*n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func runModel(t *testing.T, cfg modelConfig, steps []byte) {
	var fails []string
	kinds := map[string]int{}
	fail := func(format string, args ...any) {
		if kinds[format]++; kinds[format] == 1 {
			fails = append(fails, fmt.Sprintf(format, args...))
		}
	}
	m := newModel(t, cfg, fail)
	m.run(steps)
	var delivered uint64
	for _, l := range m.lives {
		delivered += l.rxDelivered
	}
	t.Logf("%v: RX %d frames sent, %d delivered; TX %d frames posted, %d seen; %d stops, %d memory changes, %d rings broken, %d backend lives",
		cfg, m.rxSent, delivered, m.txSeq, len(m.txSeen), m.stops, m.memChanges, m.breaks, len(m.lives))
	if len(fails) > 0 {
		t.Fatalf("%v: ring state broken (%d RX frames sent, TX posted %d, %d lives); the first of each kind, of %d:\n%s", cfg, m.rxSent, m.rings[txRing].drv.AvailIdx(), len(m.lives), total(kinds), joinLines(fails))
	}
}

func total(kinds map[string]int) (n int) {
	for _, k := range kinds {
		n += k
	}
	return n
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for _, l := range s {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// TestRingStateModel runs the model on every configuration with full rings
// and thousands of frames each way.
func TestRingStateModel(t *testing.T) {
	steps := 4000
	if testing.Short() || testutil.Race {
		steps = 1000
	}
	for i, cfg := range modelConfigs() {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			runModel(t, cfg, modelSteps(uint64(i)+1, steps))
		})
	}
}

// FuzzRingStateModel takes the step sequence from the fuzzer; the first
// byte picks the configuration.
func FuzzRingStateModel(f *testing.F) {
	for i := 0; i < 4; i++ {
		f.Add(append([]byte{byte(i * 5)}, modelSteps(uint64(i)+100, 300)...))
	}
	cfgs := modelConfigs()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 1 || len(in) > 4096 {
			return
		}
		runModel(t, cfgs[int(in[0])%len(cfgs)], in[1:])
	})
}
