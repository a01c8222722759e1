package netdev

import (
	"testing"

	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// BenchmarkRXPath64 is one 64-byte frame through the RX path, per op: the
// host's write into the TAP stand-in, refill, the read into a guest
// buffer, the used entry, and the guest reaping and reposting the buffer
// (vqdriver allocates there; the path does not: TestPathsZeroAllocs). It
// compares builds of the path, not a throughput figure: perf/ has those.
//
// The logging variant runs with a dirty log on (live migration): every
// frame's pages and the used ring are marked.
func BenchmarkRXPath64(b *testing.B) {
	b.Run("log=off", func(b *testing.B) { benchRX64(b, false) })
	b.Run("log=on", func(b *testing.B) { benchRX64(b, true) })
}

func benchRX64(b *testing.B, logging bool) {
	r := newRig(b, 256, 4096, true)
	if logging {
		end := r.drv.Config().End()
		r.q.SetLog(virtqueue.NewDirtyLog(make([]byte, end/virtqueue.LogPage/8+1)), true, r.drv.Config().Used)
	}
	rx := newRxPath()
	rx.reset(r.q, true, 1518+12)
	for i := 0; i < 256; i++ {
		r.drv.AddChain(nil, []int{2048})
	}
	r.drv.Publish()
	f := make([]byte, 12+64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 32 {
		for k := 0; k < 32; k++ {
			unix.Write(r.peer, f)
		}
		for got := 0; got < 32; {
			rx.refill(budget, &r.c)
			n, _ := rx.fromTAP(r.tq, budget, &r.c)
			got += n
			rx.complete()
		}
		for {
			c, ok := r.drv.Used()
			if !ok {
				break
			}
			_ = c
			r.drv.AddChain(nil, []int{2048})
		}
		r.drv.Publish()
	}
}
