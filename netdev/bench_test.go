package netdev

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkRXPath64 is one 64-byte frame through the RX path, per op: the
// host's write into the TAP stand-in, refill, the read into a guest
// buffer, the used entry, and the guest reaping and reposting the buffer
// (vqdriver allocates there; the path does not: TestPathsZeroAllocs). It
// compares builds of the path, not a throughput figure: perf/ has those.
func BenchmarkRXPath64(b *testing.B) {
	r := newRig(b, 256, 4096, true)
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
