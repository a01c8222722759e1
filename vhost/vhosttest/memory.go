package vhosttest

import (
	"fmt"
	"unsafe"

	"github.com/vhostd/vhostd/vhost"
	"golang.org/x/sys/unix"
)

// Layout places one region of guest memory. UserAddr 0 means "the address
// of this process's own mapping", as QEMU sends; any other value is sent
// as given (the back-end only uses it to translate ring addresses).
// MmapOffset must be a multiple of the page size: the memfd is made
// MmapOffset+Size long and the front-end maps it from MmapOffset.
type Layout struct {
	GPA, Size, UserAddr, MmapOffset uint64
}

// Region is one region of guest memory: a memfd mapped in this process.
type Region struct {
	Layout
	Fd  int    // the memfd; the front-end keeps it open until Close
	Mem []byte // Size bytes, guest physical GPA..GPA+Size
	// Live is false once a later SET_MEM_TABLE replaced the region (or
	// REM_MEM_REG removed it): it stays mapped on this side, but new rings
	// are not laid out in it.
	Live bool
	next uint64 // bump allocator for LayoutRing, offset into Mem
}

// Desc returns the region's SET_MEM_TABLE description.
func (r *Region) Desc() RegionDesc {
	return RegionDesc{GPA: r.GPA, Size: r.Size, UserAddr: r.UserAddr, MmapOffset: r.MmapOffset}
}

func (r *Region) close() { unmapAndClose(&r.Mem, &r.Fd) }

// unmapAndClose releases a shared mapping and the fd behind it; a second
// call does nothing.
func unmapAndClose(mem *[]byte, fd *int) {
	if *mem != nil {
		unix.Munmap(*mem)
		*mem = nil
	}
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

// NewMemfd creates a memfd named name of size bytes (sparse).
func NewMemfd(name string, size uint64) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("ftruncate memfd: %w", err)
	}
	return fd, nil
}

// NewRegion creates and maps one region without sending anything.
func (f *FrontEnd) NewRegion(l Layout) (*Region, error) {
	if l.Size == 0 || l.MmapOffset%uint64(unix.Getpagesize()) != 0 {
		return nil, fmt.Errorf("region: size %d, offset %d", l.Size, l.MmapOffset)
	}
	fd, err := NewMemfd(f.Name, l.MmapOffset+l.Size)
	if err != nil {
		return nil, err
	}
	m, err := unix.Mmap(fd, int64(l.MmapOffset), int(l.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap: %w", err)
	}
	if l.UserAddr == 0 {
		l.UserAddr = uint64(uintptr(unsafe.Pointer(&m[0])))
	}
	return &Region{Layout: l, Fd: fd, Mem: m, Live: true}, nil
}

// SetMemTable creates one memfd region per layout and sends SET_MEM_TABLE
// (with NEED_REPLY) carrying their fds. The new regions replace the
// front-end's memory; the old ones stay mapped until Close (rings laid out
// in them keep working on this side).
func (f *FrontEnd) SetMemTable(layouts ...Layout) error {
	var rs []*Region
	for _, l := range layouts {
		r, err := f.NewRegion(l)
		if err != nil {
			for _, r := range rs {
				r.close()
			}
			return err
		}
		rs = append(rs, r)
	}
	descs := make([]RegionDesc, len(rs))
	fds := make([]int, len(rs))
	for i, r := range rs {
		descs[i], fds[i] = r.Desc(), r.Fd
	}
	for _, r := range f.regions {
		r.Live = false
	}
	f.regions = append(f.regions, rs...)
	return f.Request(vhost.ReqSetMemTable, MemTable(descs...), fds...)
}

// AddMemReg creates one region and sends ADD_MEM_REG with its fd.
func (f *FrontEnd) AddMemReg(l Layout) (*Region, error) {
	r, err := f.NewRegion(l)
	if err != nil {
		return nil, err
	}
	f.regions = append(f.regions, r)
	return r, f.Request(vhost.ReqAddMemReg, MemReg(r.Desc()), r.Fd)
}

// RemMemReg sends REM_MEM_REG for r (the front-end keeps its mapping).
func (f *FrontEnd) RemMemReg(r *Region) error {
	r.Live = false
	return f.Request(vhost.ReqRemMemReg, MemReg(r.Desc()))
}

// Regions returns every region the front-end created, oldest first.
func (f *FrontEnd) Regions() []*Region { return f.regions }

// GPAToVA translates a guest physical range to the user address the
// front-end announced for it (0, false when it is not inside one region).
// Live regions win, then later ones.
func (f *FrontEnd) GPAToVA(gpa, n uint64) (uint64, bool) {
	for _, r := range f.byPreference() {
		if gpa >= r.GPA && gpa-r.GPA < r.Size && n <= r.Size-(gpa-r.GPA) {
			return r.UserAddr + (gpa - r.GPA), true
		}
	}
	return 0, false
}

// Mem returns n bytes of guest memory at gpa, or nil.
func (f *FrontEnd) Mem(gpa, n uint64) []byte {
	for _, r := range f.byPreference() {
		if gpa >= r.GPA && gpa-r.GPA < r.Size && n <= r.Size-(gpa-r.GPA) {
			off := gpa - r.GPA
			return r.Mem[off : off+n]
		}
	}
	return nil
}

// byPreference lists live regions newest first, then the replaced ones.
func (f *FrontEnd) byPreference() []*Region {
	var live, old []*Region
	for i := len(f.regions) - 1; i >= 0; i-- {
		if f.regions[i].Live {
			live = append(live, f.regions[i])
		} else {
			old = append(old, f.regions[i])
		}
	}
	return append(live, old...)
}
