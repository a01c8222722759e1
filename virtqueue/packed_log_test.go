package virtqueue

import "testing"

// TestPackedDirtyLog: with used-ring logging on, PushBatch marks the
// pages of the used descriptors it writes (at the logged descriptor ring
// address plus their offset), EnableNotify the device area's page, and
// MarkWritten the buffers; with logging off nothing is marked.
func TestPackedDirtyLog(t *testing.T) {
	r := newPackedRing(t, 512, ringOpts{eventIdx: true, slab: 64}) // ring spans two pages from a page boundary
	bits := make([]byte, 4096)
	set := func(gpa uint64) bool { p := gpa / LogPage; return bits[p/8]&(1<<(p%8)) != 0 }
	log := NewDirtyLog(bits)
	r.q.SetLog(log, true, r.cfg.Desc)
	if !r.q.Logging() {
		t.Fatal("Logging() = false")
	}
	for range 300 { // slots 0..299: the second page of the ring from slot 256
		r.drv.AddChain(nil, []int{8})
	}
	r.drv.Publish()
	cs, _ := r.pop(300)
	if r.cfg.Desc%LogPage != 0 {
		t.Fatalf("ring at %#x, not page aligned", r.cfg.Desc)
	}
	push := func(cs []Chain) {
		used := make([]Used, 0, len(cs))
		for _, c := range cs {
			used = append(used, Used{Head: c.Head, Len: 8})
		}
		r.q.PushBatch(used)
	}
	push(cs[:256]) // used slots 0..255: the ring's first page
	if !set(r.cfg.Desc) || set(r.cfg.Desc+16*256) {
		t.Fatal("first 256 used descriptors: first page not marked, or second page marked")
	}
	clear(bits)
	push(cs[256:]) // used slots 256..299: the second page
	if set(r.cfg.Desc) || !set(r.cfg.Desc+16*256) {
		t.Fatal("last 44 used descriptors: first page marked, or second page not")
	}
	r.q.MarkWritten(cs[299].In, 8)
	gpa, _ := r.m.GPAOf(cs[299].In[0])
	if !set(gpa) {
		t.Fatal("MarkWritten did not mark the buffer")
	}
	r.q.EnableNotify()
	if !set(r.cfg.Used) {
		t.Fatal("device area not marked")
	}
	clear(bits)
	r.q.SetLog(nil, false, 0)
	r.drv.UsedAll()
	r.drv.AddChain(nil, []int{8})
	r.drv.Publish()
	cs, _ = r.pop(1)
	r.q.PushBatch([]Used{{Head: cs[0].Head, Len: 8}})
	r.q.MarkWritten(cs[0].In, 8)
	for _, b := range bits {
		if b != 0 {
			t.Fatal("marked with logging off")
		}
	}
}
