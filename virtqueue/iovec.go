package virtqueue

import (
	"github.com/vhostd/vhostd/internal/rawio"
	"golang.org/x/sys/unix"
)

// AppendIovecs appends one unix.Iovec per non-empty buffer of segs to dst
// and returns the extended slice, for readv/writev/io_uring on a chain's
// Out or In: rawio.AppendIovecs, which builds every iovec vhostd uses. It
// allocates only if dst lacks capacity: give it caller storage of
// Chain.MaxSegs() entries and reuse it.
//
// The iovecs carry raw pointers into guest memory; the Go garbage
// collector does not track mmap'd memory, so they stay valid exactly as
// long as the chain's iovecs do (see Chain).
func AppendIovecs(dst []unix.Iovec, segs [][]byte) []unix.Iovec {
	return rawio.AppendIovecs(dst, segs)
}
