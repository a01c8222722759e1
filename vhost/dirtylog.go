package vhost

import (
	"math"

	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// DirtyLogger is implemented by devices that can log the guest memory they
// write, which live migration needs (vhost-user.rst, "Migration" and
// "Dirty logging"). vhost offers VHOST_F_LOG_ALL and
// VHOST_USER_PROTOCOL_F_LOG_SHMFD only for such devices; QEMU refuses to
// migrate a guest whose back-end does not offer both.
type DirtyLogger interface {
	// SetDirtyLog makes the data path mark every page of guest memory it
	// writes in log; nil stops it. It returns once the data path uses the
	// new log (or none), so the old one may be unmapped.
	SetDirtyLog(log *virtqueue.DirtyLog)
	// SetRingLog turns used-ring logging on or off for a started ring,
	// its used ring being at usedGPA (VHOST_VRING_F_LOG, log_guest_addr).
	SetRingLog(index int, on bool, usedGPA uint64)
}

// vringFLog is VHOST_VRING_F_LOG's bit in SET_VRING_ADDR's flags.
const vringFLog = 1 << 0

// maxLogSize bounds the log SET_LOG_BASE may map: one bit per 4 KiB page,
// so 1 GiB of log covers 32 TiB of guest memory.
const maxLogSize = 1 << 30

func (s *session) logger() (DirtyLogger, bool) {
	l, ok := s.dev.(DirtyLogger)
	return l, ok
}

// logState is the session's dirty log: the mapping SET_LOG_BASE made.
type logState struct {
	mapping []byte
	log     *virtqueue.DirtyLog
}

// setLogBase maps the log the front-end sends: VhostUserLog is
// {mmap_size, mmap_offset} and one fd. It always has a reply of its own
// (QEMU waits for it, NEED_REPLY or not). A later SET_LOG_BASE (memory
// added during migration) swaps the log while the rings run: the data path
// moves to the new one before the old one is unmapped.
func (s *session) setLogBase(m *Msg) ([]byte, error) {
	lg, ok := s.logger()
	if !ok {
		return nil, reject("protocol_features", "the device cannot log")
	}
	size, off := le.Uint64(m.Payload), le.Uint64(m.Payload[8:])
	fd := m.Fds[0]
	if size == 0 || size > maxLogSize {
		return nil, reject("mmap_size", "%d: the log is 1 to %d bytes", size, maxLogSize)
	}
	if off > math.MaxInt64-size {
		return nil, reject("mmap_offset", "%#x + size %#x overflows", off, size)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, reject("fds", "fstat log fd: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || uint64(st.Size) < off+size {
		// A shorter file would raise SIGBUS on the first mark past its end.
		return nil, reject("fds", "log fd is not a file of at least %d bytes (mode %#o, %d bytes)", off+size, st.Mode, st.Size)
	}
	mapping, err := unix.Mmap(fd, 0, int(off+size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, reject("fds", "mmap log: %v", err)
	}
	old := s.logs
	s.logs = logState{mapping: mapping, log: virtqueue.NewDirtyLog(mapping[off : off+size])}
	s.applyLog(lg)
	if old.mapping != nil {
		unix.Munmap(old.mapping)
	}
	s.log.Info("dirty log mapped", "size", size, "offset", off, "pages", s.logs.log.Pages())
	return u64Bytes(0), nil
}

// applyLog hands the device the log when logging is on: VHOST_F_LOG_ALL
// acked and a log mapped.
func (s *session) applyLog(lg DirtyLogger) {
	if s.features&bit(FeatLogAll) != 0 && s.logs.log != nil {
		lg.SetDirtyLog(s.logs.log)
	} else {
		lg.SetDirtyLog(nil)
	}
}

// dropLog stops logging and unmaps the log (disconnect, reset).
func (s *session) dropLog() {
	if lg, ok := s.logger(); ok {
		lg.SetDirtyLog(nil)
	}
	if s.logs.mapping != nil {
		unix.Munmap(s.logs.mapping)
	}
	s.logs = logState{}
}
