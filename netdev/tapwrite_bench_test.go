package netdev

import (
	"net"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
)

// BenchmarkTXPath64 is one 64-byte guest frame through the TX path into a
// real TAP (up, nobody listening: the host drops the frames), per op: pop,
// prepare (the copy behind the header), the write, the used entry, and the
// guest reaping and reposting the chain, in batches of 64. The two modes
// are --tap-write write and uring; run them interleaved (-count 1 in a
// loop) on a shared machine.
func BenchmarkTXPath64(b *testing.B) {
	for _, w := range []TAPWrite{TAPWriteSyscall, TAPWriteUring} {
		b.Run("tap-write="+w.String(), func(b *testing.B) { benchTX64(b, w) })
	}
}

func benchTX64(b *testing.B, w TAPWrite) {
	privtest.NetNS(b)
	d, err := tap.OpenTAP(tap.Config{Name: "vhb" + testutil.Suffix(8)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if err := d.SetUp(true); err != nil {
		b.Fatal(err)
	}
	if err := useTAPWrite(d, 1, w); err != nil {
		b.Fatal(err)
	}
	r := newRig(b, 256, 4096, true)
	r.tq = d.Queue(0)
	tx := newTxPath()
	tx.reset(r.q, 1518)
	frame := append(make([]byte, 12), testutil.TaggedFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, net.HardwareAddr{2, 0, 0, 0, 0, 1}, "bench", 0, 64)...)
	for i := 0; i < 128; i++ {
		r.drv.AddChain([][]byte{frame}, nil)
	}
	r.drv.Publish()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		for got := 0; got < 64; {
			n, _ := tx.pop(64-got, &r.c)
			tx.toTAP(r.tq, true, &r.c)
			tx.complete()
			got += n
		}
		for {
			if _, ok := r.drv.Used(); !ok {
				break
			}
			r.drv.AddChain([][]byte{frame}, nil)
		}
		r.drv.Publish()
	}
	b.StopTimer()
	if r.c.local[cTxPackets] < uint64(b.N) {
		b.Fatal("no frame reached the TAP")
	}
}
