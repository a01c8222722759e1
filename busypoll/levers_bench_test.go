package busypoll

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSpinLevers compares settings of the spinning loop's clock lever (clockEvery) in
// one binary; run it interleaved (-count 1 in a loop) on a shared machine.
//
//   - idle: ns per idle round of an adaptive worker that spins (the spin budget is an hour,
//     so it never sleeps): the clock read is most of an idle round.
//
//   - pickup: one item's trip to a spinning adaptive worker and back (BenchmarkHandoff's
//     spin50us case): how soon a spinning worker sees work.
//
//     go test -run '^$' -bench SpinLevers ./busypoll/
func BenchmarkSpinLevers(b *testing.B) {
	for _, every := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("idle/clock-every=%d", every), func(b *testing.B) {
			defer setClockEvery(every)()
			f := newFake(b)
			w := startBench(b, Config{SpinBudget: time.Hour}, f)
			waitRounds(b, func() uint64 { return w.Stats().IdleRounds })
		})
	}
	for _, every := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("pickup/clock-every=%d", every), func(b *testing.B) {
			defer setClockEvery(every)()
			f := newFake(b)
			w := startBench(b, Config{SpinBudget: 50 * time.Microsecond}, f)
			f.w = w
			b.ResetTimer()
			roundTrips(b, f)
		})
	}
}

// setClockEvery sets clockEvery for the next worker started and returns the restore.
func setClockEvery(n int) func() {
	c := clockEvery
	clockEvery = n
	return func() { clockEvery = c }
}

func startBench(b *testing.B, cfg Config, p Poller) *Worker {
	w, err := Start(cfg, p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	return w
}

// waitRounds times b.N rounds as counted by count, sleeping meanwhile (the worker needs
// the CPU).
func waitRounds(b *testing.B, count func() uint64) {
	start := count()
	b.ResetTimer()
	for count()-start < uint64(b.N) {
		time.Sleep(200 * time.Microsecond)
	}
}
