package virtqueue

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// testBase is the guest physical address of test guest memory.
const testBase = 0x100000

// guestMem maps n bytes of anonymous, page-aligned memory (as a memfd
// region would be) and unmaps it when the test ends.
func guestMem(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// oneRegion is a Memory of one region: b at GPA base.
func oneRegion(t testing.TB, base uint64, b []byte) *Memory {
	t.Helper()
	r, err := NewRegionFromBytes(RegionSpec{GPA: base, Size: uint64(len(b)), UserAddr: 0x7f0000000000 + base}, b)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMemory([]*Region{r})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type ringOpts struct {
	eventIdx, indirect bool
	slab               uint64 // bytes per head slab; default 4096
	nextAvail          uint16
	extra              int  // spare guest memory after the heap, beyond 4096 bytes
	mmap               bool // back guest memory with mmap instead of the Go heap
}

// testRing is one guest (driver) and device (queue) pair over one region.
type testRing struct {
	mem []byte
	m   *Memory
	drv *vqdriver.Driver
	q   *Queue
	cfg Config
}

func newTestRing(t testing.TB, size uint16, o ringOpts) *testRing {
	t.Helper()
	if o.slab == 0 {
		o.slab = 4096
	}
	dc := vqdriver.Layout(size, testBase, o.slab)
	dc.EventIdx = o.eventIdx
	n := int(dc.End()-testBase) + 4096 + o.extra
	n = (n + 4095) &^ 4095
	var mem []byte
	if o.mmap {
		mem = guestMem(t, n)
	} else {
		mem = heapMem(n)
	}
	drv, err := vqdriver.New(mem, testBase, dc)
	if err != nil {
		t.Fatal(err)
	}
	if o.nextAvail != 0 {
		drv.StartAt(o.nextAvail)
	}
	m := oneRegion(t, testBase, mem)
	c := Config{Size: size, Desc: dc.Desc, Avail: dc.Avail, Used: dc.Used, EventIdx: o.eventIdx, Indirect: o.indirect}
	q, err := NewQueue(m, c, o.nextAvail)
	if err != nil {
		t.Fatal(err)
	}
	// Used index starts where the device starts.
	return &testRing{mem: mem, m: m, drv: drv, q: q, cfg: c}
}

// spare returns the GPA of free guest memory past the heap (at least
// 4096 + ringOpts.extra bytes).
func (r *testRing) spare() uint64 { return r.drv.Config().End() }

// raw writes descs as descriptors 0, 1, ... of the main table, makes
// descriptor 0 the next avail entry and publishes it.
func (r *testRing) raw(descs ...vqdriver.Desc) {
	for i, d := range descs {
		r.drv.WriteDesc(uint16(i), d)
	}
	r.drv.PutAvail(0)
	r.drv.Publish()
}

// rawTable writes descs as an indirect table at gpa.
func (r *testRing) rawTable(gpa uint64, descs ...vqdriver.Desc) {
	for i, d := range descs {
		r.drv.WriteDescAt(gpa+uint64(i)*16, d)
	}
}

// pop pops up to max chains of 64 iovecs each.
func (r *testRing) pop(max int) ([]Chain, error) {
	cs := NewChains(max, 64)
	n, err := r.q.PopBatch(cs)
	return cs[:n], err
}

// gpaOf returns the guest physical address of b, a slice of r.mem.
func (r *testRing) gpaOf(t testing.TB, b []byte) uint64 {
	t.Helper()
	if !inside(b, r.mem) {
		t.Fatalf("iovec outside guest memory")
	}
	return testBase + offsetIn(b, r.mem)
}

const (
	fN = vqdriver.FlagNext
	fW = vqdriver.FlagWrite
	fI = vqdriver.FlagIndirect
)

type D = vqdriver.Desc

// expectBroken checks that the queue broke with want, and stays broken.
func expectBroken(t *testing.T, r *testRing, err, want error) {
	t.Helper()
	if !errors.Is(err, want) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if r.q.Broken() != want {
		t.Fatalf("Broken() = %v, want %v", r.q.Broken(), want)
	}
	r.drv.AddChain([][]byte{[]byte("x")}, nil)
	r.drv.Publish()
	cs := NewChains(4, 4)
	if n, err := r.q.PopBatch(cs); n != 0 || err != want {
		t.Fatalf("PopBatch on broken queue = %d, %v", n, err)
	}
	if r.q.EnableNotify() {
		t.Fatal("EnableNotify on broken queue reported work")
	}
}

// expectReturned pushes c with length 0 and checks the guest sees it.
func expectReturned(t *testing.T, r *testRing, c *Chain) {
	t.Helper()
	r.q.PushBatch([]Used{{Head: c.Head, Len: 0}})
	u, ok := r.drv.Used()
	if !ok || u.Head != c.Head || u.Len != 0 {
		t.Fatalf("used = %+v, %v; want head %d len 0", u, ok, c.Head)
	}
}

// twoRegions splits mem into two regions at GPA testBase and
// testBase+half+gap (gap 0: adjacent).
func twoRegions(t *testing.T, mem []byte, half int, gap uint64) *Memory {
	t.Helper()
	r1, err := NewRegionFromBytes(RegionSpec{GPA: testBase, Size: uint64(half), UserAddr: 0x7f0000000000}, mem[:half])
	if err != nil {
		t.Fatal(err)
	}
	r2, err := NewRegionFromBytes(RegionSpec{GPA: testBase + uint64(half) + gap, Size: uint64(len(mem) - half), UserAddr: 0x7f0000000000 + uint64(half) + gap}, mem[half:])
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMemory([]*Region{r2, r1})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
