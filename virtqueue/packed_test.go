package virtqueue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// packedTraffic drives chains through a packed ring: the driver adds
// chains (direct of 1..3 descriptors, or indirect) whose readable bytes
// name their sequence number, the device pops them in random batches,
// checks the bytes, writes a reply into the writable buffer and pushes
// them back in pop order or shuffled; the driver checks each reply.
type packedTraffic struct {
	t       *testing.T
	r       *packedRing
	rng     *rand.Rand
	seq     uint32
	sent    map[uint16]uint32 // buffer id -> sequence number in flight
	done    int
	inOrder bool
}

func (p *packedTraffic) add() bool {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], p.seq)
	binary.LittleEndian.PutUint32(hdr[4:], ^p.seq)
	out := [][]byte{hdr[:]}
	if p.rng.IntN(2) == 0 {
		out = [][]byte{hdr[:4], hdr[4:]}
	}
	var id uint16
	var err error
	if p.r.cfg.Indirect && p.rng.IntN(3) == 0 {
		id, err = p.r.drv.AddChainIndirect(out, []int{64})
	} else {
		id, err = p.r.drv.AddChain(out, []int{64})
	}
	if errors.Is(err, vqdriver.ErrNoDescs) {
		return false
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.sent[id] = p.seq
	p.seq++
	return true
}

// serve pops one batch and pushes it back.
func (p *packedTraffic) serve(cs []Chain, used []Used) int {
	n, err := p.r.q.PopBatch(cs[:1+p.rng.IntN(len(cs))])
	if err != nil {
		p.t.Fatal(err)
	}
	used = used[:0]
	for i := range cs[:n] {
		c := &cs[i]
		if c.Err != nil || c.CheckRX() == nil {
			p.t.Fatalf("chain %d: %v", c.Head, c.Err)
		}
		var got []byte
		for _, b := range c.Out {
			got = append(got, b...)
		}
		want, ok := p.sent[c.Head]
		if !ok || len(got) != 8 || binary.LittleEndian.Uint32(got) != want || binary.LittleEndian.Uint32(got[4:]) != ^want {
			p.t.Fatalf("chain id %d carries %x, want seq %d (in flight %v)", c.Head, got, want, ok)
		}
		copy(c.In[0], got[:4])
		used = append(used, Used{Head: c.Head, Len: 4})
	}
	if !p.inOrder {
		p.rng.Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
	}
	p.r.q.PushBatch(used)
	return n
}

func (p *packedTraffic) reap() {
	for _, u := range p.r.drv.UsedAll() {
		want, ok := p.sent[u.Head]
		if !u.Known || !ok || u.Len != 4 || binary.LittleEndian.Uint32(u.Written) != want {
			p.t.Fatalf("completion %+v, want seq %d (%v)", u, want, ok)
		}
		delete(p.sent, u.Head)
		p.done++
	}
}

// TestPackedRoundTrip moves thousands of chains through packed rings of
// 256, 1024 and 300 (not a power of two) entries across many wraps, with
// batches, indirect chains, in-order and out-of-order completion; every
// payload and reply is checked on both sides and the two sides' positions
// agree at the end.
func TestPackedRoundTrip(t *testing.T) {
	for _, size := range []uint16{256, 1024, 300} {
		for _, inOrder := range []bool{true, false} {
			r := newPackedRing(t, size, ringOpts{indirect: true, slab: 256, eventIdx: true})
			p := &packedTraffic{t: t, r: r, rng: rand.New(rand.NewPCG(uint64(size), 7)), sent: map[uint16]uint32{}, inOrder: inOrder}
			cs, used := NewChains(64, 8), make([]Used, 0, 64)
			total := max(8000, 12*int(size))
			for p.done < total {
				for k := p.rng.IntN(80); k > 0 && int(p.seq) < total && p.add(); k-- {
				}
				r.drv.Publish()
				for p.serve(cs, used) == len(cs) {
				}
				p.reap()
			}
			if r.q.NextAvail() != r.q.NextUsed() || r.q.NextUsed() != r.drv.NextUsed() || r.drv.NextAvail() != r.q.NextAvail() {
				t.Fatalf("size %d: device avail %#x used %#x, driver avail %#x used %#x", size,
					r.q.NextAvail(), r.q.NextUsed(), r.drv.NextAvail(), r.drv.NextUsed())
			}
			if laps := uint32(p.seq) / uint32(size); laps < 10 {
				t.Fatalf("only %d laps", laps)
			}
		}
	}
}

// TestPackedUsedDescriptors checks what PushBatch writes: each used
// descriptor at the slot where its chain started in the order pushed, the
// next one past the slots the chain took, id and len, AVAIL and USED equal
// to the used wrap counter and WRITE only when len > 0.
func TestPackedUsedDescriptors(t *testing.T) {
	r := newPackedRing(t, 4, ringOpts{})
	ids := make([]uint16, 3)
	for i, n := range []int{1, 2, 1} { // 4 slots: the ring is full
		out := make([][]byte, n)
		for j := range out {
			out[j] = []byte{byte(i)}
		}
		ids[i], _ = r.drv.AddChain(out, nil)
	}
	r.drv.Publish()
	cs, err := r.pop(8)
	if err != nil || len(cs) != 3 {
		t.Fatalf("pop = %d, %v", len(cs), err)
	}
	for i, c := range cs {
		if c.Head != ids[i] {
			t.Fatalf("chain %d head %d, want %d", i, c.Head, ids[i])
		}
	}
	r.q.PushBatch([]Used{{Head: ids[1], Len: 7}, {Head: ids[0]}, {Head: ids[2], Len: 1}})
	want := []struct {
		slot, id uint16
		len      uint32
		flags    uint16
	}{
		{0, ids[1], 7, vqdriver.FlagAvail | vqdriver.FlagUsed | vqdriver.FlagWrite},
		{2, ids[0], 0, vqdriver.FlagAvail | vqdriver.FlagUsed},
		{3, ids[2], 1, vqdriver.FlagAvail | vqdriver.FlagUsed | vqdriver.FlagWrite},
	}
	for _, w := range want {
		d := r.drv.ReadRaw(w.slot)
		if d.ID != w.id || d.Len != w.len || d.Flags != w.flags {
			t.Fatalf("slot %d = %+v, want id %d len %d flags %#x", w.slot, d, w.id, w.len, w.flags)
		}
	}
	if r.q.NextUsed() != 0 || r.q.NextAvail() != 0 { // wrapped: counters now 0
		t.Fatalf("positions %#x %#x after one lap", r.q.NextAvail(), r.q.NextUsed())
	}
	if got := r.drv.UsedAll(); len(got) != 3 || got[0].Head != ids[1] || !bytes.Equal(got[0].Written, []byte{}) {
		t.Fatalf("driver read %+v", got)
	}
	// Second lap: used descriptors carry wrap counter 0 (no AVAIL, no USED).
	r.drv.AddChain([][]byte{{1}}, nil)
	r.drv.Publish()
	cs, _ = r.pop(1)
	r.q.PushBatch([]Used{{Head: cs[0].Head}})
	if d := r.drv.ReadRaw(0); d.Flags != 0 || d.ID != cs[0].Head {
		t.Fatalf("second lap used descriptor %+v", d)
	}
}

// TestPackedBatchVisibleAtOnce: a driver goroutine that sees the first
// used descriptor of a pushed batch sees every other one of the batch
// too: PushBatch stores the first descriptor last (virtio 1.x 2.8.20).
func TestPackedBatchVisibleAtOnce(t *testing.T) {
	const size, k = 64, 16
	r := newPackedRing(t, size, ringOpts{})
	one := []PD{{Addr: r.spare(), Len: 1}}
	cs, used := NewChains(k, 2), make([]Used, k)
	type batch struct{ slot, wrap uint16 }
	start, seen := make(chan batch), make(chan int)
	go func() {
		for b := range start {
			usedFlags := vqdriver.AvailFlags(b.wrap) | vqdriver.FlagAvail | vqdriver.FlagUsed
			if b.wrap == 0 {
				usedFlags = 0
			}
			for r.drv.ReadRaw(b.slot).Flags != usedFlags {
			}
			missing := 0
			for i := uint16(1); i < k; i++ {
				if r.drv.ReadRaw((b.slot+i)%size).Flags != usedFlags {
					missing++
				}
			}
			seen <- missing
		}
	}()
	defer close(start)
	for round := range 3000 {
		for i := range k {
			one[0].ID = uint16(i)
			r.drv.AddRaw(one)
		}
		pos := r.q.NextUsed()
		n, err := r.q.PopBatch(cs)
		if n != k || err != nil {
			t.Fatalf("PopBatch = %d, %v", n, err)
		}
		for i := range cs {
			used[i] = Used{Head: cs[i].Head}
		}
		start <- batch{pos &^ vqdriver.WrapBit, pos >> 15}
		r.q.PushBatch(used)
		if m := <-seen; m != 0 {
			t.Fatalf("round %d: first used descriptor visible with %d of the batch missing", round, m)
		}
		for range k {
			r.drv.UsedRaw(1)
		}
	}
}
