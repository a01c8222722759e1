package virtqueue

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// RegionSpec is one memory region as a vhost-user front-end describes it
// (vhost-user.rst, "Memory region description"). All fields come from an
// untrusted peer: Validate checks them before anything is mapped.
type RegionSpec struct {
	GPA        uint64 // guest physical address of the first byte
	Size       uint64 // length in bytes
	UserAddr   uint64 // front-end (QEMU) virtual address of the first byte
	MmapOffset uint64 // offset of the first byte in the fd
}

// Validation errors for RegionSpec. Callers report them and reject the
// message; nothing has been mapped when they are returned.
var (
	ErrRegionEmpty    = errors.New("region size is 0")
	ErrRegionOverflow = errors.New("region end overflows 64 bits")
	ErrRegionOverlap  = errors.New("regions overlap")
	ErrFdTooShort     = errors.New("fd is shorter than mmap_offset+size")
)

// Validate checks the spec on its own (BAD-INPUTS 16): non-zero size and no
// 64-bit overflow of any end address, including after rounding the mapping
// out to whole pages.
func (s RegionSpec) Validate() error {
	if s.Size == 0 {
		return ErrRegionEmpty
	}
	for _, base := range [...]uint64{s.GPA, s.UserAddr, s.MmapOffset} {
		if _, c := bits.Add64(base, s.Size, 0); c != 0 {
			return ErrRegionOverflow
		}
	}
	page := uint64(unix.Getpagesize())
	delta := s.MmapOffset & (page - 1)
	length, c := bits.Add64(s.Size, delta, 0)
	if c != 0 {
		return ErrRegionOverflow
	}
	if _, c := bits.Add64(length, page-1, 0); c != 0 {
		return ErrRegionOverflow
	}
	if length > uint64(maxInt) {
		return ErrRegionOverflow
	}
	return nil
}

const maxInt = int(^uint(0) >> 1)

// Region is one guest memory region mapped into this process.
type Region struct {
	RegionSpec
	mapping []byte // the whole page-aligned mapping
	data    []byte // the region's bytes: Size long, starting at GPA
	once    sync.Once
}

// MapRegion validates s, checks that fd is long enough (BAD-INPUTS 18: never
// rely on SIGBUS) and maps it shared, read-write. The fd is always closed
// before MapRegion returns, on success and on failure alike: the mapping keeps
// the memory alive on its own.
func MapRegion(fd int, s RegionSpec) (*Region, error) {
	defer unix.Close(fd)
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat region fd: %w", err)
	}
	// Only regular files (memfd, hugetlbfs, tmpfs) have a size to check
	// against; anything else is refused.
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("region fd is not a regular file (mode %#o)", st.Mode)
	}
	if st.Size < 0 || uint64(st.Size) < s.MmapOffset+s.Size {
		return nil, fmt.Errorf("%w: fd size %d, need %d", ErrFdTooShort, st.Size, s.MmapOffset+s.Size)
	}
	page := uint64(unix.Getpagesize())
	delta := s.MmapOffset & (page - 1)
	length := s.Size + delta
	m, err := unix.Mmap(fd, int64(s.MmapOffset-delta), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap region: %w", err)
	}
	// Guest RAM stays out of vhostd's core dumps: a crash must not write
	// a guest's memory to the host's disk.
	if err := unix.Madvise(m, unix.MADV_DONTDUMP); err != nil {
		unix.Munmap(m)
		return nil, fmt.Errorf("madvise region MADV_DONTDUMP: %w", err)
	}
	return &Region{RegionSpec: s, mapping: m, data: m[delta : delta+s.Size : delta+s.Size]}, nil
}

// NewRegionFromBytes wraps memory the caller owns (for tests and for
// front-ends that share their own mapping). Close does not unmap it.
func NewRegionFromBytes(s RegionSpec, b []byte) (*Region, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if uint64(len(b)) < s.Size {
		return nil, fmt.Errorf("region bytes: have %d, need %d", len(b), s.Size)
	}
	return &Region{RegionSpec: s, data: b[:s.Size:s.Size]}, nil
}

// Bytes returns the region's memory, Size bytes starting at GPA.
func (r *Region) Bytes() []byte { return r.data }

// Close unmaps the region. It is safe to call more than once; only the
// first call unmaps. No reader may use the region's memory afterwards: the
// caller makes sure every worker has stopped using it (busypoll Pause).
func (r *Region) Close() error {
	var err error
	r.once.Do(func() {
		if r.mapping != nil {
			err = unix.Munmap(r.mapping)
		}
		r.mapping, r.data = nil, nil
	})
	return err
}

// Memory is an immutable table of guest memory regions. A new table is built
// for every change (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG) and swapped in
// whole, so readers never see a half-updated table. A nil *Memory is an
// empty table: nothing translates.
type Memory struct {
	regions []*Region // sorted by GPA
}

// NewMemory builds a table from regions. Regions may not overlap in guest
// physical space nor in front-end virtual space (BAD-INPUTS 17), so every
// translation has exactly one answer.
func NewMemory(regions []*Region) (*Memory, error) {
	rs := append([]*Region(nil), regions...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	for i := 1; i < len(rs); i++ {
		if rs[i].GPA < rs[i-1].GPA+rs[i-1].Size {
			return nil, fmt.Errorf("%w: guest physical %#x and %#x", ErrRegionOverlap, rs[i-1].GPA, rs[i].GPA)
		}
	}
	byVA := append([]*Region(nil), rs...)
	sort.Slice(byVA, func(i, j int) bool { return byVA[i].UserAddr < byVA[j].UserAddr })
	for i := 1; i < len(byVA); i++ {
		if byVA[i].UserAddr < byVA[i-1].UserAddr+byVA[i-1].Size {
			return nil, fmt.Errorf("%w: front-end virtual %#x and %#x", ErrRegionOverlap, byVA[i-1].UserAddr, byVA[i].UserAddr)
		}
	}
	return &Memory{regions: rs}, nil
}

// Regions returns the table's regions, sorted by guest physical address.
// The slice must not be modified.
func (m *Memory) Regions() []*Region {
	if m == nil {
		return nil
	}
	return m.regions
}

// Len is the number of regions.
func (m *Memory) Len() int {
	if m == nil {
		return 0
	}
	return len(m.regions)
}

// Slice returns the n bytes of guest memory at guest physical address gpa.
// ok is false unless the whole extent lies inside one region; an extent
// whose end overflows is refused (BAD-INPUTS 33). n == 0 is valid inside a
// region and returns an empty slice.
func (m *Memory) Slice(gpa, n uint64) (b []byte, ok bool) {
	r, off := m.find(gpa)
	if r == nil || n > r.Size-off {
		return nil, false
	}
	return r.data[off : off+n : off+n], true
}

// Contiguous reports the largest prefix of [gpa, gpa+n) that lies in one
// region, and the bytes of that prefix. A buffer that spans adjacent regions
// is walked by calling Contiguous again at gpa+len(b). ok is false when gpa
// itself is outside every region.
func (m *Memory) Contiguous(gpa, n uint64) (b []byte, ok bool) {
	r, off := m.find(gpa)
	if r == nil {
		return nil, false
	}
	if n > r.Size-off {
		n = r.Size - off
	}
	return r.data[off : off+n : off+n], true
}

// find returns the region that holds guest physical address gpa and gpa's
// offset in it, or nil when gpa is outside every region (or m is nil).
func (m *Memory) find(gpa uint64) (r *Region, off uint64) {
	if m == nil {
		return nil, 0
	}
	for _, r := range m.regions {
		if gpa < r.GPA {
			break
		}
		if off := gpa - r.GPA; off < r.Size {
			return r, off
		}
	}
	return nil, 0
}

// VAToGPA translates a front-end virtual address range to a guest physical
// address. The whole range must lie inside one region (BAD-INPUTS 24).
func (m *Memory) VAToGPA(va, n uint64) (gpa uint64, ok bool) {
	if m == nil {
		return 0, false
	}
	for _, r := range m.regions {
		if va < r.UserAddr {
			continue
		}
		off := va - r.UserAddr
		if off >= r.Size || n > r.Size-off {
			continue
		}
		return r.GPA + off, true
	}
	return 0, false
}

// Close closes every region in the table.
func (m *Memory) Close() {
	if m == nil {
		return
	}
	for _, r := range m.regions {
		r.Close()
	}
}
