package vqdriver

import (
	"errors"
	"testing"
)

// TestPackedDriver plays the device by hand: the driver's chains appear
// with the right flags only at Publish (head last), fill the ring up to
// ErrNoDescs, and come back through Used once a used descriptor is
// written, freeing their slots; the kick follows the device area.
func TestPackedDriver(t *testing.T) {
	c := PackedLayout(5, base+1, 128) // any size
	if c.Desc%16 != 0 || c.Driver != c.Desc+16*5 || c.Device != c.Driver+4 || c.End() != c.Heap+5*128 {
		t.Fatalf("layout %+v", c)
	}
	mem := make([]byte, c.End()-base)
	d, err := NewPacked(mem, base, c)
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.AddChain([][]byte{[]byte("ab")}, []int{4})
	if err != nil {
		t.Fatal(err)
	}
	if h := d.ReadRaw(0); h.Flags != 0 || h.Len != 2 {
		t.Fatalf("head before Publish %+v", h)
	}
	if tail := d.ReadRaw(1); tail.Flags != FlagAvail|FlagWrite || tail.ID != id || tail.Len != 4 {
		t.Fatalf("tail %+v", tail)
	}
	if _, err := d.AddChainIndirect([][]byte{[]byte("x")}, []int{1, 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddChain([][]byte{{1}, {2}, {3}}, nil); !errors.Is(err, ErrNoDescs) || d.FreeSlots() != 2 {
		t.Fatalf("over-full ring: %v, %d free", err, d.FreeSlots())
	}
	if !d.Publish() {
		t.Fatal("no kick with the device area ENABLE")
	}
	if h := d.ReadRaw(0); h.Flags != FlagAvail|FlagNext || h.ID != id {
		t.Fatalf("head after Publish %+v", h)
	}
	if h := d.ReadRaw(2); h.Flags != FlagAvail|FlagIndirect || h.Len != 48 {
		t.Fatalf("indirect head %+v", h)
	}
	if _, ok := d.Used(); ok {
		t.Fatal("used descriptor before the device wrote one")
	}
	// The device returns the chain: one used descriptor at slot 0.
	copy(mem[c.Heap+uint64(id)*c.Slab+16-base:], "wxyz")
	d.WriteRaw(0, PackedDesc{Len: 3, ID: id, Flags: FlagAvail | FlagUsed | FlagWrite})
	u, ok := d.Used()
	if !ok || !u.Known || u.Head != id || string(u.Written) != "wxy" || d.FreeSlots() != 4 || d.NextUsed() != 2|WrapBit {
		t.Fatalf("used %+v %v, %d free, next %#x", u, ok, d.FreeSlots(), d.NextUsed())
	}
	// DISABLE in the device area: no kick.
	copy(mem[c.Device-base:], []byte{0, 0, EventDisable, 0})
	d.AddChain([][]byte{{1}}, nil)
	if d.Publish() {
		t.Fatal("kick despite DISABLE")
	}
}
