package virtqueue

import (
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
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
	n := int(dc.End()-testBase) + 4096
	n = (n + 4095) &^ 4095
	mem := guestMem(t, n)
	drv, err := vqdriver.New(mem, testBase, dc)
	if err != nil {
		t.Fatal(err)
	}
	if o.nextAvail != 0 {
		drv.SetAvailIdx(o.nextAvail)
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

// heap returns a GPA in the ring's heap past every slab: free guest memory.
func (r *testRing) spare() uint64 { return r.drv.Config().End() }

// pushAll returns every chain popped, with length 0 for malformed ones.
func pushAll(q *Queue, cs []Chain) {
	for i := range cs {
		q.PushBatch([]Used{{Head: cs[i].Head}})
	}
}
