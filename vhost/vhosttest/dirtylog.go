package vhosttest

import (
	"fmt"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// LogBase is SET_LOG_BASE's payload: the log's size and its offset in the fd.
func LogBase(size, off uint64) []byte { return append(U64(size), U64(off)...) }

// DirtyLog is a dirty log this front-end gave the back-end: one bit for each
// 4 KiB page of guest-physical memory, set by the back-end for every page it
// writes.
type DirtyLog struct {
	Bits []byte // mapped shared with the back-end
	fd   int
}

// Close unmaps the log and closes its fd (the back-end keeps its own
// mapping until it is given another log or the session ends).
func (l *DirtyLog) Close() error {
	unmapAndClose(&l.Bits, &l.fd)
	return nil
}

// StartDirtyLog turns dirty logging on the way QEMU does when a migration
// starts: a memfd log covering every region (SET_LOG_BASE, which the
// back-end answers), then SET_FEATURES with LOG_ALL added, then
// SET_VRING_ADDR with VHOST_VRING_F_LOG and the used ring's GPA for every
// ring laid out. LOG_SHMFD must have been negotiated.
func (f *FrontEnd) StartDirtyLog() (*DirtyLog, error) {
	var end uint64
	for _, r := range f.regions {
		end = max(end, r.GPA+r.Size)
	}
	size := (end/virtqueue.LogPage + 7) / 8
	size = (size + 4095) &^ 4095
	fd, err := NewMemfd("vhosttest-log", size)
	if err != nil {
		return nil, err
	}
	l := &DirtyLog{fd: fd}
	if l.Bits, err = unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		l.Close()
		return nil, fmt.Errorf("mmap the log: %w", err)
	}
	if _, err := f.Call(vhost.ReqSetLogBase, 0, LogBase(size, 0), fd); err != nil {
		l.Close()
		return nil, err
	}
	if err := f.SetFeatures(f.Features | 1<<vhost.FeatLogAll); err != nil {
		l.Close()
		return nil, err
	}
	for i, r := range f.rings {
		if err := f.msg(vhost.ReqSetVringAddr, VringAddr(uint32(i), vringFLog, r.DescVA, r.UsedVA, r.AvailVA, r.Config.Used)); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, f.Sync()
}

const (
	vringFLog = 1 // VHOST_VRING_F_LOG in SET_VRING_ADDR's flags
)
