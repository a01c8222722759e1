package vhost_test

// The memory table: SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG and the dirty log's base
// (BAD-INPUTS section B, items 14-22).

import (
	"math"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// memProbes returns n memfd probes of size bytes and their fds.
func memProbes(t *testing.T, n int, size uint64) ([]*probe, []int) {
	ps := make([]*probe, n)
	fds := make([]int, n)
	for i := range ps {
		ps[i] = memfdProbe(t, size)
		fds[i] = ps[i].Fd
	}
	return ps, fds
}

// regionsAt returns n non-overlapping 1 MiB region descriptions.
func regionsAt(n int) []vhosttest.RegionDesc {
	rs := make([]vhosttest.RegionDesc, n)
	for i := range rs {
		rs[i] = vhosttest.RegionDesc{GPA: uint64(i) << 30, Size: 1 << 20, UserAddr: 1<<40 + uint64(i)<<30}
	}
	return rs
}

// rejectTable sends a memory table that must be refused, and checks that
// every fd sent with it was closed and nothing changed.
func (h *harness) rejectTable(field string, payload []byte, ps []*probe, fds []int) {
	h.t.Helper()
	before := h.state()
	h.nack(vhost.ReqSetMemTable, payload, fds...)
	for _, p := range ps {
		p.closedByPeer()
	}
	h.logged(vhost.ReqSetMemTable, field)
	h.unchanged(before)
}

func TestBadInput14RegionCount(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	p := pipeProbe(t)
	h.rejectTable("nregions", vhosttest.MemTable(), []*probe{p}, []int{p.Fd})
	ps, fds := memProbes(t, 9, 1<<20)
	h.rejectTable("nregions", vhosttest.MemTable(regionsAt(9)...), ps, fds)
	// A huge count with a short payload: nothing is allocated for it.
	b := vhosttest.MemTable(regionsAt(1)...)
	b[0], b[1], b[2], b[3] = 0xff, 0xff, 0xff, 0xff
	ps, fds = memProbes(t, 1, 1<<20)
	h.rejectTable("nregions", b, ps, fds)
	// 8 is fine.
	_, fds = memProbes(t, 8, 1<<20)
	h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(regionsAt(8)...), fds...)
	if n := h.state().Regions; n != 8 {
		t.Fatalf("regions %d", n)
	}
}

func TestBadInput15RegionFdMismatch(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	for _, c := range []struct{ regions, fds int }{{2, 1}, {1, 2}, {3, 0}, {1, 8}} {
		ps, fds := memProbes(t, c.fds, 1<<20)
		h.rejectTable("fds", vhosttest.MemTable(regionsAt(c.regions)...), ps, fds)
	}
}

func TestBadInput16RegionBounds(t *testing.T) {
	const max = math.MaxUint64
	page := uint64(unix.Getpagesize())
	cases := []struct {
		name string
		r    vhosttest.RegionDesc
	}{
		{"size 0", vhosttest.RegionDesc{Size: 0, UserAddr: 1 << 40}},
		{"gpa+size", vhosttest.RegionDesc{GPA: max - 4095, Size: 1 << 20, UserAddr: 1 << 40}},
		{"uaddr+size", vhosttest.RegionDesc{Size: 1 << 20, UserAddr: max - 100}},
		{"offset+size", vhosttest.RegionDesc{Size: 1 << 20, UserAddr: 1 << 40, MmapOffset: max - 100}},
		{"page rounding", vhosttest.RegionDesc{Size: max - page - 10, UserAddr: 0, MmapOffset: page + 1}},
		{"size beyond int", vhosttest.RegionDesc{Size: 1 << 63, UserAddr: 0}},
	}
	h := newHarness(t)
	h.negotiate()
	for _, c := range cases {
		ps, fds := memProbes(t, 1, 1<<20)
		h.rejectTable("regions[0]", vhosttest.MemTable(c.r), ps, fds)
	}
	// The bad region second: the first one, already checked, is released too.
	ps, fds := memProbes(t, 2, 1<<20)
	good := regionsAt(1)[0]
	h.rejectTable("regions[1]", vhosttest.MemTable(good, cases[1].r), ps, fds)
}

func TestBadInput17Overlap(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	a := vhosttest.RegionDesc{GPA: 0, Size: 1 << 20, UserAddr: 1 << 40}
	for _, b := range []vhosttest.RegionDesc{
		{GPA: 1<<20 - 4096, Size: 1 << 20, UserAddr: 2 << 40}, // GPA overlap
		{GPA: 1 << 30, Size: 1 << 20, UserAddr: 1<<40 + 4096}, // VA overlap
		{GPA: 0, Size: 1 << 20, UserAddr: 3 << 40},            // same GPA
		{GPA: 1 << 32, Size: 1 << 20, UserAddr: 1<<40 - 4096}, // VA overlap from below
	} {
		// Both regions map fine on their own: the table is refused, and
		// both mappings are released.
		ps, fds := memProbes(t, 2, 1<<20)
		h.rejectTable("regions", vhosttest.MemTable(a, b), ps, fds)
	}
	// Adjacent regions do not overlap.
	_, fds := memProbes(t, 2, 1<<20)
	h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(a, vhosttest.RegionDesc{GPA: 1 << 20, Size: 1 << 20, UserAddr: 1<<40 + 1<<20}), fds...)
}

func TestBadInput18FdTooShort(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	r := vhosttest.RegionDesc{Size: 1 << 20, UserAddr: 1 << 40}
	ps, fds := memProbes(t, 1, 1<<19)
	h.rejectTable("regions[0]", vhosttest.MemTable(r), ps, fds)
	r.MmapOffset = 4096
	ps, fds = memProbes(t, 1, 1<<20)
	h.rejectTable("regions[0]", vhosttest.MemTable(r), ps, fds)
	// Not mappable: a pipe, and a directory.
	r.MmapOffset = 0
	p := pipeProbe(t)
	h.rejectTable("regions[0]", vhosttest.MemTable(r), []*probe{p}, []int{p.Fd})
	d, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := privtest.OpenFds()
	h.nack(vhost.ReqSetMemTable, vhosttest.MemTable(r), d)
	unix.Close(d)
	if !waitFor(2e9, func() bool { return privtest.OpenFds() == before-1 }) {
		t.Fatalf("directory fd kept: %d fds, want %d", privtest.OpenFds(), before-1)
	}
}

func TestBadInput19MaxMemSlots(t *testing.T) {
	h := newHarnessLevel(t, 0)
	h.negotiate()
	if h.fe.Proto&(1<<vhost.ProtoConfigureMemSlots) == 0 {
		t.Fatal("CONFIGURE_MEM_SLOTS not negotiated")
	}
	slots, err := h.fe.GetU64(vhost.ReqGetMaxMemSlots)
	if err != nil {
		t.Fatal(err)
	}
	if slots != vhost.MaxMemSlots {
		t.Fatalf("GET_MAX_MEM_SLOTS %d", slots)
	}
	// One memfd, one page per region: slots pages.
	name := uniqueName("slots")
	fd, err := vhosttest.NewMemfd(name, (slots+1)*4096)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	reg := func(i uint64) vhosttest.RegionDesc {
		return vhosttest.RegionDesc{GPA: i << 20, Size: 4096, UserAddr: 1<<40 + i<<20, MmapOffset: i * 4096}
	}
	for i := uint64(0); i < slots; i++ {
		h.ack(vhost.ReqAddMemReg, vhosttest.MemReg(reg(i)), fd)
	}
	if n := vhosttest.MapsCount(name); n != int(slots) {
		t.Fatalf("%d mappings, want %d", n, slots)
	}
	before := h.state()
	p := memfdProbe(t, 4096)
	h.nack(vhost.ReqAddMemReg, vhosttest.MemReg(vhosttest.RegionDesc{GPA: 1 << 40, Size: 4096, UserAddr: 1 << 41}), p.Fd)
	p.closedByPeer()
	h.logged(vhost.ReqAddMemReg, "regions")
	h.unchanged(before)
	// An ADD_MEM_REG that overlaps an existing region is refused too.
	p = memfdProbe(t, 4096)
	h.nack(vhost.ReqAddMemReg, vhosttest.MemReg(reg(3)), p.Fd)
	p.closedByPeer()
	h.fe.Close()
	if !waitFor(2e9, func() bool { return vhosttest.MapsCount(name) == 0 }) {
		t.Fatalf("%d mappings left after disconnect", vhosttest.MapsCount(name))
	}
}

func TestBadInput20RemMemReg(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	if err := h.fe.SetMemTable(vhosttest.Layout{Size: 4 << 20}, vhosttest.Layout{GPA: 1 << 30, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := h.fe.SetupRing(0, 256); err != nil {
		t.Fatal(err)
	}
	regs := h.fe.Regions()
	before := h.state()
	// A region that does not exist (and one that only matches in part).
	for _, d := range []vhosttest.RegionDesc{
		{GPA: 2 << 30, Size: 1 << 20, UserAddr: 1 << 40},
		{GPA: regs[1].GPA, Size: regs[1].Size, UserAddr: regs[1].UserAddr + 4096},
	} {
		h.nack(vhost.ReqRemMemReg, vhosttest.MemReg(d))
	}
	h.logged(vhost.ReqRemMemReg, "region")
	// The region ring 0 runs in.
	h.nack(vhost.ReqRemMemReg, vhosttest.MemReg(regs[0].Desc()))
	h.logged(vhost.ReqRemMemReg, "regions")
	h.unchanged(before)
	// The other one may go.
	if err := h.fe.RemMemReg(regs[1]); err != nil {
		t.Fatal(err)
	}
	if n := h.state().Regions; n != 1 {
		t.Fatalf("%d regions", n)
	}

	{
		// SET_MEM_TABLE without the running ring's memory.
		before := h.state()
		ps, fds := memProbes(t, 1, 1<<20)
		h.rejectTable("regions", vhosttest.MemTable(vhosttest.RegionDesc{GPA: 0, Size: 1 << 20, UserAddr: 1 << 40}), ps, fds)
		h.unchanged(before)
	}
	{
		// SET_MEM_TABLE moving the running ring: the ring's user addresses still translate, but to other guest
		// physical addresses: the running ring's cached translation would
		// be stale, so the table is refused.
		before := h.state()
		r := regs[0].Desc()
		r.GPA = 8 << 30
		ps, fds := memProbes(t, 1, r.Size)
		h.rejectTable("regions", vhosttest.MemTable(r), ps, fds)
		h.unchanged(before)
	}
	{
		// SET_MEM_TABLE with the same layout again (QEMU after a reboot or
		// hot-plug) is fine.
		_, fds := memProbes(t, 1, regs[0].Size)
		h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(regs[0].Desc()), fds...)
		if _, ok := h.state().Running[0]; !ok {
			t.Fatal("ring 0 stopped")
		}
	}
}

func TestBadInput21MappingsReleased(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	name := uniqueName("replace")
	for i := 0; i < 100; i++ {
		fd, err := vhosttest.NewMemfd(name, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(vhosttest.RegionDesc{Size: 1 << 20, UserAddr: 1 << 40}), fd)
		unix.Close(fd)
		// Only the current table is mapped; its fd was closed once mapped.
		if n, m := vhosttest.MapsCount(name), vhosttest.FdsMatching("/memfd:"+name+" "); n != 1 || m != 0 {
			t.Fatalf("after table %d: %d mappings, %d fds", i, n, m)
		}
	}
	h.fe.Close()
	if !waitFor(2e9, func() bool { return vhosttest.MapsCount(name) == 0 }) {
		t.Fatalf("%d mappings after disconnect", vhosttest.MapsCount(name))
	}
}

func TestBadInput22LogBase(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	if h.fe.OfferedProto&(1<<vhost.ProtoLogShmfd) != 0 || h.fe.Offered&(1<<vhost.FeatLogAll) != 0 {
		t.Fatal("dirty logging offered")
	}
	h.start(1)
	before := h.state()
	log := make([]byte, 16) // {mmap_size, mmap_offset}
	for _, v := range [][2]uint64{{0, 0}, {math.MaxUint64, 4096}, {4096, math.MaxUint64}, {4096, 0}} {
		le := func(b []byte, x uint64) { copy(b, u64(x)) }
		le(log, v[0])
		le(log[8:], v[1])
		p := memfdProbe(t, 4096)
		h.nack(vhost.ReqSetLogBase, log, p.Fd)
		p.closedByPeer()
	}
	h.logged(vhost.ReqSetLogBase, "protocol_features")
	p := pipeProbe(t)
	h.nack(vhost.ReqSetLogFd, nil, p.Fd)
	p.closedByPeer()
	h.logged(vhost.ReqSetLogFd, "protocol_features")
	h.nack(vhost.ReqSetFeatures, u64(h.fe.Features|1<<vhost.FeatLogAll))
	// VHOST_VRING_F_LOG in SET_VRING_ADDR.
	r := h.fe.Ring(0)
	h.nack(vhost.ReqSetVringAddr, vhosttest.VringAddr(1, 1, r.DescVA, r.UsedVA, r.AvailVA, 0))
	h.logged(vhost.ReqSetVringAddr, "flags")
	h.unchanged(before)
}
