package tap

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
)

// BenchmarkWriteBatch writes 64-byte frames (plus the 12-byte header) into a TAP that is up
// with nobody listening: the host stack drops them. ns/op is ns per frame.
func BenchmarkWriteBatch(b *testing.B) {
	for _, batch := range []int{1, 32, 128} {
		b.Run(batchName(batch), func(b *testing.B) {
			d, _ := openTestTAP(b, 1)
			if err := d.SetUp(true); err != nil {
				b.Fatal(err)
			}
			var hdr [VnetHdrLen]byte
			frame := testutil.TaggedFrame(broadcast, testSrcMAC, "bench", 0, 64)
			frames := make([][]unix.Iovec, batch)
			for i := range frames {
				frames[i] = []unix.Iovec{rawio.Iovec(hdr[:]), rawio.Iovec(frame)}
			}
			q := d.Queue(0)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			for done := 0; done < b.N; {
				f := frames
				if rest := b.N - done; rest < len(f) {
					f = f[:rest]
				}
				n, e := q.WriteBatch(f)
				if e != 0 {
					b.Fatalf("WriteBatch = %d, %v", n, e)
				}
				done += n
			}
		})
	}
}

// BenchmarkRawWrite is the peer: one write(2) of a prebuilt header+frame per frame, the
// physical limit of the TAP path. Compare its ns/op with BenchmarkWriteBatch in one run.
func BenchmarkRawWrite(b *testing.B) {
	d, _ := openTestTAP(b, 1)
	if err := d.SetUp(true); err != nil {
		b.Fatal(err)
	}
	buf := append(make([]byte, VnetHdrLen), testutil.TaggedFrame(broadcast, testSrcMAC, "bench", 0, 64)...)
	fd := d.Queue(0).Fd()
	b.ReportAllocs()
	b.SetBytes(int64(len(buf) - VnetHdrLen))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := unix.Write(fd, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func batchName(n int) string {
	switch n {
	case 1:
		return "batch=1"
	case 32:
		return "batch=32"
	}
	return "batch=128"
}
