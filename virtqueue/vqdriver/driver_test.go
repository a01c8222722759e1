package vqdriver

import (
	"encoding/binary"
	"errors"
	"testing"
)

const base = 0x10000

func newDriver(t *testing.T, size uint16, eventIdx bool) (*Driver, []byte) {
	t.Helper()
	c := Layout(size, base, 256)
	c.EventIdx = eventIdx
	mem := make([]byte, c.End()-base)
	d, err := New(mem, base, c)
	if err != nil {
		t.Fatal(err)
	}
	return d, mem
}

func TestLayout(t *testing.T) {
	c := Layout(256, base+1, 64)
	if c.Desc%16 != 0 || c.Desc < base+1 || c.Avail != c.Desc+16*256 || c.Used%4 != 0 ||
		c.Used < c.Avail+6+2*256+2 || c.Heap < c.Used+6+8*256+2 || c.End() != c.Heap+256*64 {
		t.Fatalf("layout %+v", c)
	}
}

func TestNewRejects(t *testing.T) {
	mem := make([]byte, 4096)
	for _, c := range []Config{
		{Size: 3},
		{Size: 0},
		{Size: 8, Desc: base - 16, Avail: base + 1024, Used: base + 2048},
		{Size: 8, Desc: base, Avail: base + 4096, Used: base + 2048},
		{Size: 8, Desc: base, Avail: base + 1024, Used: base + 4090},
		{Size: 8, Desc: base, Avail: base + 1024, Used: base + 2048, Heap: base + 3000, Slab: 1024},
	} {
		if _, err := New(mem, base, c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
}

// deviceComplete plays a device: reads the next avail head at slot and
// writes a used entry.
func deviceComplete(d *Driver, mem []byte, head uint16, n uint32) {
	c := d.Config()
	u := mem[c.Used-base:]
	idx := binary.LittleEndian.Uint16(u[2:])
	off := 4 + 8*int(idx&(c.Size-1))
	binary.LittleEndian.PutUint32(u[off:], uint32(head))
	binary.LittleEndian.PutUint32(u[off+4:], n)
	binary.LittleEndian.PutUint16(u[2:], idx+1)
}

func TestAddChainAndComplete(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		d, mem := newDriver(t, 8, false)
		add := d.AddChain
		if indirect {
			add = d.AddChainIndirect
		}
		h, err := add([][]byte{[]byte("abc")}, []int{4, 4})
		if err != nil {
			t.Fatal(err)
		}
		if d.AvailIdx() != 1 || !d.Publish() {
			t.Fatal("publish")
		}
		c := d.Config()
		av := mem[c.Avail-base:]
		if binary.LittleEndian.Uint16(av[2:]) != 1 || binary.LittleEndian.Uint16(av[4:]) != h {
			t.Fatal("avail ring not written")
		}
		hd := d.ReadDesc(h)
		if indirect {
			if hd.Flags != FlagIndirect || hd.Len != 48 {
				t.Fatalf("indirect head %+v", hd)
			}
			if d.FreeDescs() != 7 {
				t.Fatalf("free %d", d.FreeDescs())
			}
		} else {
			if hd.Flags != FlagNext || hd.Len != 3 || string(d.Mem(hd.Addr, 3)) != "abc" {
				t.Fatalf("head %+v", hd)
			}
			if d.FreeDescs() != 5 {
				t.Fatalf("free %d", d.FreeDescs())
			}
		}
		// Device writes 6 bytes into the two 4-byte buffers.
		var in []Desc
		if indirect {
			for i := 1; i < 3; i++ {
				b := d.Mem(hd.Addr+16*uint64(i), 16)
				in = append(in, Desc{Addr: binary.LittleEndian.Uint64(b), Len: binary.LittleEndian.Uint32(b[8:])})
			}
		} else {
			n1 := d.ReadDesc(hd.Next)
			in = append(in, n1, d.ReadDesc(n1.Next))
		}
		copy(d.Mem(in[0].Addr, 4), "wxyz")
		copy(d.Mem(in[1].Addr, 4), "12..")
		deviceComplete(d, mem, h, 6)
		got := d.UsedAll()
		if len(got) != 1 || !got[0].Known || got[0].Head != h || string(got[0].Written) != "wxyz12" {
			t.Fatalf("completions %+v", got)
		}
		if d.FreeDescs() != 8 {
			t.Fatalf("descriptors not freed: %d", d.FreeDescs())
		}
	}
}

func TestAddChainErrors(t *testing.T) {
	d, _ := newDriver(t, 4, false)
	if _, err := d.AddChain(nil, nil); !errors.Is(err, ErrNoBuffers) {
		t.Fatal(err)
	}
	if _, err := d.AddChain(nil, []int{1, 1, 1, 1, 1}); !errors.Is(err, ErrNoDescs) {
		t.Fatal(err)
	}
	if _, err := d.AddChain(nil, []int{300}); !errors.Is(err, ErrSlab) {
		t.Fatal(err)
	}
	if d.FreeDescs() != 4 || d.AvailIdx() != 0 {
		t.Fatal("failed AddChain changed state")
	}
}

func TestKickAndInterruptSuppression(t *testing.T) {
	// Without EVENT_IDX: the device's NO_NOTIFY flag.
	d, mem := newDriver(t, 8, false)
	c := d.Config()
	d.AddChain(nil, []int{1})
	if !d.Publish() {
		t.Fatal("no kick with flags 0")
	}
	binary.LittleEndian.PutUint16(mem[c.Used-base:], UsedFNoNotify)
	d.AddChain(nil, []int{1})
	if d.Publish() {
		t.Fatal("kick despite NO_NOTIFY")
	}
	d.DisableInterrupts()
	if binary.LittleEndian.Uint16(mem[c.Avail-base:])&AvailFNoInterrupt == 0 {
		t.Fatal("NO_INTERRUPT not set")
	}
	if d.EnableInterrupts() {
		t.Fatal("pending with nothing used")
	}
	deviceComplete(d, mem, 0, 0)
	if !d.EnableInterrupts() {
		t.Fatal("used entry not reported pending")
	}

	// With EVENT_IDX: avail_event and used_event.
	d, mem = newDriver(t, 8, true)
	c = d.Config()
	ae := mem[c.Used-base+4+8*8:]
	binary.LittleEndian.PutUint16(ae, 1) // device wants a kick when entry 1 is published
	d.AddChain(nil, []int{1})
	if d.Publish() {
		t.Fatal("kick for entry 0")
	}
	d.AddChain(nil, []int{1})
	if !d.Publish() {
		t.Fatal("no kick for entry 1")
	}
	if d.AvailEvent() != 1 {
		t.Fatal("AvailEvent")
	}
	deviceComplete(d, mem, 0, 0)
	d.Used()
	d.EnableInterrupts()
	if got := binary.LittleEndian.Uint16(mem[c.Avail-base+4+2*8:]); got != 1 {
		t.Fatalf("used_event = %d, want 1", got)
	}
}

func TestStartAt(t *testing.T) {
	d, mem := newDriver(t, 8, false)
	d.StartAt(65535)
	h, _ := d.AddChain(nil, []int{1})
	d.Publish()
	if d.AvailIdx() != 0 || d.UsedIdx() != 65535 {
		t.Fatalf("indices %d %d", d.AvailIdx(), d.UsedIdx())
	}
	deviceComplete(d, mem, h, 1)
	if c, ok := d.Used(); !ok || c.Head != h {
		t.Fatalf("%+v %v", c, ok)
	}
}
