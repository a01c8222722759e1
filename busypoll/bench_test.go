package busypoll

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkHandoff measures one item's trip from a producer goroutine to the worker and
// back (the producer waits until the item is consumed before producing the next): through
// an eventfd wake-up in event mode, through Wake for a poller without fds, and with a
// worker that never sleeps.
//
//	go test -run '^$' -bench Handoff ./busypoll/
func BenchmarkHandoff(b *testing.B) {
	for _, bc := range []struct {
		name string
		spin time.Duration
		noFd bool
	}{
		{"mode=event/eventfd", 0, false},
		{"mode=event/wake", 0, true},
		{"mode=spin50us/eventfd", 50 * time.Microsecond, false},
		{"mode=spinforever", SpinForever, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFake(b)
			f.noFd = bc.noFd
			w, err := Start(Config{SpinBudget: bc.spin}, f)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Stop()
			f.w = w
			b.ReportAllocs()
			b.ResetTimer()
			roundTrips(b, f)
			b.StopTimer()
			s := w.Stats()
			b.ReportMetric(float64(s.Sleeps)/float64(b.N), "sleeps/op")
		})
	}
}

// roundTrips produces b.N items one at a time, each once the worker consumed the one
// before.
func roundTrips(b *testing.B, f *fakePoller) {
	for i := 1; i <= b.N; i++ {
		f.produce(1)
		for j := 0; f.consumed.Load() < uint64(i); j++ {
			if j%64 == 63 {
				runtime.Gosched()
			}
		}
	}
}
