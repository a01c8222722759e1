// Package vqdriver is the driver (guest) side of a virtio split virtqueue,
// for tests. It plays the guest: it lays out the descriptor table, avail
// ring and used ring in a []byte of guest memory at given guest physical
// addresses, writes buffers into guest memory, publishes chains, reads the
// used ring back, and handles indirect descriptors and the EVENT_IDX fields.
//
//	mem []byte (guest RAM at GPA base)
//	  | Desc table | avail ring | used ring | heap: Size slabs, one per head |
//
// Driver does not import virtqueue: it only knows bytes, so it can exercise
// any device implementation (and the device's tests can import it). Besides
// the well-behaved AddChain / Publish / Used calls it has raw writers
// (WriteDesc, PutAvail, SetAvailIdx) for building malformed rings.
//
// A Driver is not safe for concurrent use, but it may run in one goroutine
// while the device runs in another: every ring word the two share is
// accessed through internal/shmem, atomically where the device may read or
// write it concurrently, as on the device side.
package vqdriver

import (
	"errors"
	"fmt"

	"github.com/vhostd/vhostd/internal/shmem"
)

// barrier is the target of the driver side's full fences (virtio_mb),
// shared by every Driver: a test driver is not on a hot path.
var barrier shmem.Fence

// Descriptor flags, virtio 1.x 2.7.5.
const (
	FlagNext     = 1
	FlagWrite    = 2
	FlagIndirect = 4

	// AvailFNoInterrupt and UsedFNoNotify are the ring flags (2.7.7, 2.7.10).
	AvailFNoInterrupt = 1
	UsedFNoNotify     = 1

	DescSize = 16
)

// Desc is one descriptor as the guest writes it.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Config places one ring and its buffer heap in guest memory (GPAs).
type Config struct {
	Size              uint16 // queue size
	Desc, Avail, Used uint64 // ring parts
	EventIdx          bool   // use used_event / avail_event (VIRTIO_RING_F_EVENT_IDX)
	// InOrder reads used entries as a VIRTIO_F_IN_ORDER driver does
	// (inorder.go): an entry may stand for a batch ending at its id.
	InOrder bool
	// Heap is the GPA of Size slabs of Slab bytes each: chain with head h
	// keeps its buffers (and indirect table) in slab h.
	Heap, Slab uint64
}

// Layout returns a Config with the ring at base (rounded up to 16) laid
// out as the Linux driver does (desc, then avail, then used 4-aligned,
// each EVENT_IDX field followed by 2 bytes of padding) and a heap of size
// slabs of slab bytes after it. End is the first GPA past the heap.
func Layout(size uint16, base, slab uint64) Config {
	n := uint64(size)
	desc := (base + 15) &^ 15
	avail := desc + 16*n
	used := (avail + 8 + 2*n + 3) &^ 3
	heap := (used + 8 + 8*n + 15) &^ 15
	return Config{Size: size, Desc: desc, Avail: avail, Used: used, Heap: heap, Slab: slab}
}

// End is the first GPA past c's heap.
func (c Config) End() uint64 { return c.Heap + uint64(c.Size)*c.Slab }

// Errors of AddChain.
var (
	ErrNoDescs   = errors.New("vqdriver: not enough free descriptors")
	ErrSlab      = errors.New("vqdriver: buffers do not fit in the head's slab")
	ErrNoBuffers = errors.New("vqdriver: chain without buffers")
)

type inflight struct {
	descs []uint16 // main-table descriptors the chain holds
	in    [][2]uint64
	live  bool
}

// Driver is the guest side of one split ring.
type Driver struct {
	mem  []byte
	base uint64
	cfg  Config

	desc, avail, used []byte

	free       []uint16 // free descriptor indices, used as a stack
	chains     []inflight
	availIdx   uint16 // private: entries written, published or not
	published  uint16 // avail.idx as last published
	availFlags uint16
	lastUsed   uint16
	batch      inOrderBatch
}

// New builds a driver over mem (guest memory starting at GPA base) and
// zeroes the ring. Every part of c must lie inside mem.
func New(mem []byte, base uint64, c Config) (*Driver, error) {
	if c.Size == 0 || c.Size&(c.Size-1) != 0 || c.Size > 32768 {
		return nil, fmt.Errorf("vqdriver: bad size %d", c.Size)
	}
	d := &Driver{mem: mem, base: base, cfg: c}
	n := uint64(c.Size)
	var ok bool
	if d.desc, ok = d.slice(c.Desc, 16*n); !ok {
		return nil, fmt.Errorf("vqdriver: desc table outside memory")
	}
	if d.avail, ok = d.slice(c.Avail, 8+2*n); !ok {
		if d.avail, ok = d.slice(c.Avail, 6+2*n); !ok {
			return nil, fmt.Errorf("vqdriver: avail ring outside memory")
		}
	}
	if d.used, ok = d.slice(c.Used, 8+8*n); !ok {
		if d.used, ok = d.slice(c.Used, 6+8*n); !ok {
			return nil, fmt.Errorf("vqdriver: used ring outside memory")
		}
	}
	if c.Slab != 0 {
		if _, ok = d.slice(c.Heap, n*c.Slab); !ok {
			return nil, fmt.Errorf("vqdriver: heap outside memory")
		}
	}
	clear(d.desc)
	clear(d.avail[:6+2*n])
	clear(d.used[:6+8*n])
	d.chains = make([]inflight, c.Size)
	d.free = make([]uint16, c.Size)
	for i := range d.free {
		d.free[i] = c.Size - 1 - uint16(i) // pop order 0, 1, 2...
	}
	return d, nil
}

// Config returns the ring's placement.
func (d *Driver) Config() Config { return d.cfg }

func (d *Driver) slice(gpa, n uint64) ([]byte, bool) {
	if gpa < d.base {
		return nil, false
	}
	off := gpa - d.base
	if off > uint64(len(d.mem)) || n > uint64(len(d.mem))-off {
		return nil, false
	}
	return d.mem[off : off+n : off+n], true
}

// Mem returns the n bytes of guest memory at gpa. It panics if they are
// not inside the driver's memory (a test bug).
func (d *Driver) Mem(gpa, n uint64) []byte {
	b, ok := d.slice(gpa, n)
	if !ok {
		panic(fmt.Sprintf("vqdriver: %#x+%d outside guest memory", gpa, n))
	}
	return b
}

// FreeDescs is the number of main-table descriptors not held by a chain.
func (d *Driver) FreeDescs() int { return len(d.free) }

// WriteDesc writes descriptor i of the main table. Raw: no bookkeeping.
// WriteDesc and WriteDescAt touch no driver state and store atomically
// when the descriptor is 8-aligned: a test goroutine may call them while
// another uses the Driver.
func (d *Driver) WriteDesc(i uint16, x Desc) {
	d.WriteDescAt(d.cfg.Desc+16*uint64(i), x)
}

// WriteDescAt writes a descriptor at any guest address (indirect tables,
// misaligned ones included). Raw: no bookkeeping.
func (d *Driver) WriteDescAt(gpa uint64, x Desc) {
	shmem.StoreDesc(d.Mem(gpa, DescSize), 0, x.Addr, uint64(x.Len)|uint64(x.Flags)<<32|uint64(x.Next)<<48)
}

// ReadDesc reads descriptor i of the main table.
func (d *Driver) ReadDesc(i uint16) Desc {
	b := d.Mem(d.cfg.Desc+16*uint64(i), DescSize)
	addr, w := shmem.LoadDesc(b, 0)
	return Desc{Addr: addr, Len: uint32(w), Flags: uint16(w >> 32), Next: uint16(w >> 48)}
}

// PutAvail writes head into the next avail ring slot without publishing
// it. Raw: head need not be a chain AddChain built (completions for such
// heads carry no data).
func (d *Driver) PutAvail(head uint16) {
	shmem.Store16(d.avail, 4+2*int(d.availIdx&(d.cfg.Size-1)), head)
	d.availIdx++
}

// WriteAvailSlot writes head into avail ring slot (slot mod Size) with
// one atomic store and touches no driver state, so a test goroutine may
// call it while another uses the Driver (flipping ring entries under the
// device, BAD-INPUTS 39).
func (d *Driver) WriteAvailSlot(slot, head uint16) {
	shmem.Store16(d.avail, 4+2*int(slot&(d.cfg.Size-1)), head)
}

// SetAvailIdx stores idx as avail.idx at once (raw: lets a test move the
// index anywhere) and makes it the driver's private index too.
func (d *Driver) SetAvailIdx(idx uint16) {
	d.availIdx, d.published = idx, idx
	shmem.Store32(d.avail, 0, uint32(d.availFlags)|uint32(idx)<<16)
}

// StartAt puts both rings at index idx as if idx chains had already gone
// round (a ring restarted with SET_VRING_BASE idx, or a test of index
// wrap-around): avail.idx, used.idx and the driver's cursors become idx.
// Use it only while the device is not running.
func (d *Driver) StartAt(idx uint16) {
	d.SetAvailIdx(idx)
	d.lastUsed = idx
	shmem.Store32(d.used, 0, uint32(idx)<<16)
}

// AvailIdx is the driver's private avail index (published or not).
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// Publish makes every entry written since the last Publish visible (one
// store-release of avail.idx) and reports whether the device asked for a
// kick: avail_event with EVENT_IDX, VRING_USED_F_NO_NOTIFY without.
func (d *Driver) Publish() (kick bool) {
	old, cur := d.published, d.availIdx
	shmem.Store32(d.avail, 0, uint32(d.availFlags)|uint32(cur)<<16)
	d.published = cur
	barrier.Full()
	if d.cfg.EventIdx {
		ev := d.AvailEvent()
		return cur-ev-1 < cur-old
	}
	return shmem.Load16(d.used, 0)&UsedFNoNotify == 0
}

// AddChain builds a chain of direct descriptors: one device-readable
// buffer per out slice (its bytes copied into guest memory) followed by one
// device-writable buffer of in[i] bytes each, all in the head's slab, and
// writes the head into the avail ring. Call Publish to make it visible.
func (d *Driver) AddChain(out [][]byte, in []int) (head uint16, err error) {
	n := len(out) + len(in)
	if n == 0 {
		return 0, ErrNoBuffers
	}
	if n > len(d.free) {
		return 0, ErrNoDescs
	}
	descs := make([]uint16, n)
	for i := range descs {
		descs[i] = d.free[len(d.free)-1-i]
	}
	head = descs[0]
	bufs, err := d.placeBuffers(head, 0, out, in)
	if err != nil {
		return 0, err
	}
	d.free = d.free[:len(d.free)-n]
	for i, b := range bufs {
		if i+1 < n {
			b.Flags |= FlagNext
			b.Next = descs[i+1]
		}
		d.WriteDesc(descs[i], b)
	}
	d.track(head, descs, bufs)
	d.PutAvail(head)
	return head, nil
}

// AddChainIndirect is AddChain with the buffers described by an indirect
// table at the start of the head's slab; the chain takes one main-table
// descriptor.
func (d *Driver) AddChainIndirect(out [][]byte, in []int) (head uint16, err error) {
	n := len(out) + len(in)
	if n == 0 {
		return 0, ErrNoBuffers
	}
	if len(d.free) == 0 {
		return 0, ErrNoDescs
	}
	head = d.free[len(d.free)-1]
	tbl := uint64(n) * DescSize
	bufs, err := d.placeBuffers(head, tbl, out, in)
	if err != nil {
		return 0, err
	}
	d.free = d.free[:len(d.free)-1]
	at := d.slab(head)
	for i, b := range bufs {
		if i+1 < n {
			b.Flags |= FlagNext
			b.Next = uint16(i + 1)
		}
		d.WriteDescAt(at+uint64(i)*DescSize, b)
	}
	d.WriteDesc(head, Desc{Addr: at, Len: uint32(tbl), Flags: FlagIndirect})
	d.track(head, []uint16{head}, bufs)
	d.PutAvail(head)
	return head, nil
}

func (d *Driver) slab(head uint16) uint64 { return d.cfg.Heap + uint64(head)*d.cfg.Slab }

// placeBuffers lays the buffers out in head's slab from offset skip on.
func (d *Driver) placeBuffers(head uint16, skip uint64, out [][]byte, in []int) ([]Desc, error) {
	at := d.slab(head)
	off := skip
	var bufs []Desc
	for _, b := range out {
		off = (off + 15) &^ 15
		if off+uint64(len(b)) > d.cfg.Slab {
			return nil, ErrSlab
		}
		copy(d.Mem(at+off, uint64(len(b))), b)
		bufs = append(bufs, Desc{Addr: at + off, Len: uint32(len(b))})
		off += uint64(len(b))
	}
	for _, n := range in {
		off = (off + 15) &^ 15
		if n < 0 || off+uint64(n) > d.cfg.Slab {
			return nil, ErrSlab
		}
		clear(d.Mem(at+off, uint64(n)))
		bufs = append(bufs, Desc{Addr: at + off, Len: uint32(n), Flags: FlagWrite})
		off += uint64(n)
	}
	return bufs, nil
}

func (d *Driver) track(head uint16, descs []uint16, bufs []Desc) {
	c := inflight{descs: descs, live: true}
	for _, b := range bufs {
		if b.Flags&FlagWrite != 0 {
			c.in = append(c.in, [2]uint64{b.Addr, uint64(b.Len)})
		}
	}
	d.chains[head] = c
}

// Completion is one used ring entry read back by the driver.
type Completion struct {
	Head uint16
	Len  uint32 // as the device wrote it
	// Written is a copy of the first min(Len, writable size) bytes of the
	// chain's device-writable buffers, gathered in order. Nil for heads
	// the driver did not build with AddChain*.
	Written []byte
	// Known is true when Head was a chain this driver had in flight (its
	// descriptors are now free again).
	Known bool
}

// UsedIdx reads used.idx as the device last published it.
func (d *Driver) UsedIdx() uint16 { return shmem.Load16(d.used, 2) }

// Used returns the next used entry, if the device has published one.
func (d *Driver) Used() (Completion, bool) {
	if d.cfg.InOrder {
		return d.usedInOrder()
	}
	if d.UsedIdx() == d.lastUsed {
		return Completion{}, false
	}
	off := 4 + 8*int(d.lastUsed&(d.cfg.Size-1))
	id := shmem.Get32(d.used, off)
	n := shmem.Get32(d.used, off+4)
	d.lastUsed++
	return d.complete(id, n), true
}

// complete frees chain id, which the device returned with length n.
func (d *Driver) complete(id, n uint32) Completion {
	c := Completion{Head: uint16(id), Len: n}
	if id < uint32(d.cfg.Size) && d.chains[id].live {
		ch := d.chains[id]
		d.chains[id] = inflight{}
		c.Known = true
		c.Written = gather(d.Mem, ch.in, n)
		d.free = append(d.free, ch.descs...)
	}
	return c
}

// UsedAll drains every published used entry.
func (d *Driver) UsedAll() []Completion { return drain(d.Used) }

// EnableInterrupts asks the device to call on its next used entry
// (used_event = the next entry the driver will read, with EVENT_IDX;
// clears VRING_AVAIL_F_NO_INTERRUPT without), then, after a full fence,
// reports whether used entries arrived meanwhile: if pending, read them
// instead of waiting for a call (the driver's side of the lost-wakeup race).
func (d *Driver) EnableInterrupts() (pending bool) {
	if d.cfg.EventIdx {
		d.SetUsedEvent(d.lastUsed)
	} else if d.availFlags&AvailFNoInterrupt != 0 {
		d.SetNoInterrupt(false)
	}
	barrier.Full()
	return d.UsedIdx() != d.lastUsed
}

// DisableInterrupts asks the device not to call (sets
// VRING_AVAIL_F_NO_INTERRUPT; with EVENT_IDX leaves used_event behind).
func (d *Driver) DisableInterrupts() {
	if !d.cfg.EventIdx {
		d.SetNoInterrupt(true)
	}
}

// SetNoInterrupt sets or clears VRING_AVAIL_F_NO_INTERRUPT (only
// meaningful without EVENT_IDX).
func (d *Driver) SetNoInterrupt(on bool) {
	if on {
		d.availFlags |= AvailFNoInterrupt
	} else {
		d.availFlags &^= AvailFNoInterrupt
	}
	shmem.Store32(d.avail, 0, uint32(d.availFlags)|uint32(d.published)<<16)
}

// SetUsedEvent writes used_event: with EVENT_IDX the device calls when
// its used index passes v.
func (d *Driver) SetUsedEvent(v uint16) { shmem.Store16(d.avail, 4+2*int(d.cfg.Size), v) }

// AvailEvent reads avail_event as the device wrote it.
func (d *Driver) AvailEvent() uint16 { return shmem.Load16(d.used, 4+8*int(d.cfg.Size)) }

// UsedFlags reads used.flags as the device wrote it.
func (d *Driver) UsedFlags() uint16 { return shmem.Load16(d.used, 0) }
