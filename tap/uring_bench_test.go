package tap

import (
	"testing"

	"github.com/vhostd/vhostd/internal/rawio"
	"github.com/vhostd/vhostd/internal/testutil"
	"golang.org/x/sys/unix"
)

// BenchmarkWriteFrames writes 64-byte frames, each one buffer behind its
// header (as netdev copies small frames), into a TAP that is up with
// nobody listening, in batches of 64, with write(2) and through an
// io_uring. ns/op is ns per frame. Compare with BenchmarkRawWrite.
func BenchmarkWriteFrames(b *testing.B) {
	for _, m := range []WriteMode{WriteSyscall, WriteUring} {
		b.Run(m.String(), func(b *testing.B) {
			d, _ := openTestTAP(b, 1)
			if err := d.SetUp(true); err != nil {
				b.Fatal(err)
			}
			q := d.Queue(0)
			if m == WriteUring {
				if err := q.UseWriteRing(64); err != nil {
					b.Fatal(err)
				}
			}
			buf := append(make([]byte, VnetHdrLen), testutil.TaggedFrame(broadcast, testSrcMAC, "bench", 0, 64)...)
			frames := make([][]unix.Iovec, 64)
			for i := range frames {
				frames[i] = []unix.Iovec{rawio.Iovec(buf)}
			}
			errs := make([]unix.Errno, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				f := frames[:min(64, b.N-done)]
				if ok := q.WriteFrames(f, errs); ok != len(f) {
					b.Fatalf("WriteFrames = %d of %d", ok, len(f))
				}
				done += len(f)
			}
		})
	}
}
