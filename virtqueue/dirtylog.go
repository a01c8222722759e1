package virtqueue

import "github.com/vhostd/vhostd/internal/shmem"

// LogPage is the guest-physical span one bit of a dirty log stands for
// (vhost-user.rst, "Dirty logging": VHOST_LOG_PAGE).
const LogPage = 4096

// DirtyLog is the front-end's dirty-page log during live migration
// (VHOST_USER_SET_LOG_BASE): a bitmap in memory shared with the front-end,
// one bit per 4 KiB page of guest-physical address, page p at bit p%8 of
// byte p/8. While logging is on the device marks every page it writes,
// after the write; the front-end reads and clears bits at the same time,
// so each mark is an atomic OR.
//
// Marks past the end of the log are dropped: the front-end sizes the log
// for all of guest memory, and a guest address beyond it was not
// translatable in the first place.
type DirtyLog struct {
	bits []byte
}

// NewDirtyLog returns a log over b, the mapped bitmap. b is shared with
// the front-end; the DirtyLog does not own it (its mapper unmaps it once
// no ring uses the log any more).
func NewDirtyLog(b []byte) *DirtyLog { return &DirtyLog{bits: b} }

// Pages is the number of pages the log covers.
func (l *DirtyLog) Pages() uint64 { return uint64(len(l.bits)) * 8 }

// Mark marks every page [gpa, gpa+n) touches. n == 0 marks nothing. A nil
// log marks nothing: callers need not check whether logging is on.
func (l *DirtyLog) Mark(gpa, n uint64) {
	if l == nil || n == 0 {
		return
	}
	first := gpa / LogPage
	last := first + (gpa%LogPage+n-1)/LogPage
	if pages := l.Pages(); last >= pages {
		if first >= pages {
			return
		}
		last = pages - 1
	}
	for p := first; p <= last; {
		// All the pages of this byte in one OR.
		byteIdx := p / 8
		end := min(last, byteIdx*8+7)
		var v byte
		for q := p; q <= end; q++ {
			v |= 1 << (q % 8)
		}
		shmem.Or8(l.bits, int(byteIdx), v)
		p = end + 1
	}
}

// MarkBytes marks the pages of b, which must be guest memory of m (a slice
// a chain's buffers point into). It reports false, marking nothing, when b
// lies in no region of m.
func (l *DirtyLog) MarkBytes(m *Memory, b []byte) bool {
	if l == nil || len(b) == 0 {
		return true
	}
	gpa, ok := m.GPAOf(b)
	if !ok {
		return false
	}
	l.Mark(gpa, uint64(len(b)))
	return true
}
