package netdev

import (
	"testing"

	"github.com/vhostd/vhostd/virtqueue"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
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
//
// The packed variants run the same path over a packed ring (RING_PACKED).
func BenchmarkRXPath64(b *testing.B) {
	b.Run("log=off", func(b *testing.B) { benchRX64(b, false, false) })
	b.Run("log=on", func(b *testing.B) { benchRX64(b, true, false) })
	b.Run("packed/log=off", func(b *testing.B) { benchRX64(b, false, true) })
	b.Run("packed/log=on", func(b *testing.B) { benchRX64(b, true, true) })
}

func benchRX64(b *testing.B, logging, packed bool) {
	r := newRig(b, 256, 4096, true)
	var drv vqdriver.Guest = r.drv
	var q virtqueue.Ring = r.q
	end, logAt := r.drv.Config().End(), r.drv.Config().Used
	if packed {
		pd, pq := r.packed()
		drv, q, end, logAt = pd, pq, pd.Config().End(), pd.Config().Desc
	}
	if logging {
		q.SetLog(virtqueue.NewDirtyLog(make([]byte, end/virtqueue.LogPage/8+1)), true, logAt)
	}
	rx := newRxPath()
	rx.reset(q, true, 1518+12)
	buf := []int{2048}
	for i := 0; i < 256; i++ {
		drv.AddChain(nil, buf)
	}
	drv.Publish()
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
			c, ok := drv.Used()
			if !ok {
				break
			}
			_ = c
			drv.AddChain(nil, buf)
		}
		drv.Publish()
	}
}

// packed lays a packed ring of the rig's size over the rig's memory, in
// place of its split ring, and returns its driver and device sides.
func (r *rig) packed() (*vqdriver.PackedDriver, virtqueue.Ring) {
	c := r.drv.Config()
	pc := vqdriver.PackedLayout(c.Size, c.Desc, c.Slab)
	pc.EventIdx = c.EventIdx
	d, err := vqdriver.NewPacked(r.drv.Mem(testBase, c.End()-testBase), testBase, pc)
	if err != nil {
		r.t.Fatal(err)
	}
	q, err := virtqueue.NewRing(r.mem, virtqueue.Config{Size: pc.Size, Desc: pc.Desc, Avail: pc.Driver, Used: pc.Device,
		EventIdx: pc.EventIdx, Indirect: true, Packed: true}, 0x8000)
	if err != nil {
		r.t.Fatal(err)
	}
	return d, q
}
