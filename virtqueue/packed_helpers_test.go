package virtqueue

import (
	"errors"
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// packedRing is one packed-ring guest (driver) and device (queue) pair
// over one region.
type packedRing struct {
	mem []byte
	m   *Memory
	drv *vqdriver.PackedDriver
	q   *PackedQueue
	cfg Config
}

func newPackedRing(t testing.TB, size uint16, o ringOpts) *packedRing {
	t.Helper()
	if o.slab == 0 {
		o.slab = 4096
	}
	dc := vqdriver.PackedLayout(size, testBase, o.slab)
	dc.EventIdx = o.eventIdx
	n := (int(dc.End()-testBase) + 4096 + o.extra + 4095) &^ 4095
	var mem []byte
	if o.mmap {
		mem = guestMem(t, n)
	} else {
		mem = heapMem(n)
	}
	drv, err := vqdriver.NewPacked(mem, testBase, dc)
	if err != nil {
		t.Fatal(err)
	}
	base := uint32(o.nextAvail)
	if o.nextAvail == 0 {
		base = vqdriver.WrapBit
	}
	drv.StartAt(uint16(base))
	c := Config{Size: size, Desc: dc.Desc, Avail: dc.Driver, Used: dc.Device, EventIdx: o.eventIdx, Indirect: o.indirect, Packed: true}
	r := &packedRing{mem: mem, m: oneRegion(t, testBase, mem), drv: drv, cfg: c}
	if r.q, err = NewPackedQueue(r.m, c, base); err != nil {
		t.Fatal(err)
	}
	return r
}

// spare returns the GPA of free guest memory past the heap.
func (r *packedRing) spare() uint64 { return r.drv.Config().End() }

// avail is the AVAIL/USED pair for the driver's current wrap counter.
func (r *packedRing) avail() uint16 { return vqdriver.AvailFlags(r.drv.NextAvail() >> 15) }

// raw writes descs into ring slots from the device's NextAvail on (flags
// get the AVAIL/USED pair of the wrap counter of each slot), head last.
func (r *packedRing) raw(descs ...PD) {
	pos := r.q.NextAvail()
	slot, wrap := pos&^vqdriver.WrapBit, pos>>15
	type w struct {
		slot uint16
		d    PD
	}
	var ws []w
	for _, d := range descs {
		d.Flags |= vqdriver.AvailFlags(wrap)
		ws = append(ws, w{slot, d})
		if slot++; slot == r.cfg.Size {
			slot, wrap = 0, wrap^1
		}
	}
	for i := len(ws) - 1; i >= 0; i-- {
		r.drv.WriteRaw(ws[i].slot, ws[i].d)
	}
}

// rawTable writes descs as an indirect table at gpa.
func (r *packedRing) rawTable(gpa uint64, descs ...PD) {
	for i, d := range descs {
		r.drv.WriteTableAt(gpa+uint64(i)*16, d)
	}
}

func (r *packedRing) pop(max int) ([]Chain, error) {
	cs := NewChains(max, 64)
	n, err := r.q.PopBatch(cs)
	return cs[:n], err
}

type PD = vqdriver.PackedDesc

// expectPackedBroken checks that the packed queue broke with want and
// stays broken, popping nothing more.
func expectPackedBroken(t *testing.T, r *packedRing, err, want error) {
	t.Helper()
	if !errors.Is(err, want) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if r.q.Broken() != want {
		t.Fatalf("Broken() = %v, want %v", r.q.Broken(), want)
	}
	cs := NewChains(4, 4)
	if n, err := r.q.PopBatch(cs); n != 0 || err != want {
		t.Fatalf("PopBatch on broken queue = %d, %v", n, err)
	}
	if r.q.EnableNotify() {
		t.Fatal("EnableNotify on broken queue reported work")
	}
}
