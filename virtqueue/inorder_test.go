package virtqueue

import (
	"testing"

	"github.com/vhostd/vhostd/virtqueue/vqdriver"
)

// TestInOrderTXBatch: with InOrderTX a split ring's PushBatch writes one
// used element for a batch, the last head at the batch's first position,
// and moves used.idx past the whole batch; an IN_ORDER driver gets every
// chain back, in order, and the ring wraps around many times. Without
// InOrderTX each chain gets its element.
func TestInOrderTXBatch(t *testing.T) {
	for _, inOrder := range []bool{false, true} {
		dc := vqdriver.Layout(16, testBase, 256)
		dc.InOrder = true // reads either kind of ring
		mem := heapMem(int(dc.End()-testBase) + 4096)
		drv, err := vqdriver.New(mem, testBase, dc)
		if err != nil {
			t.Fatal(err)
		}
		c := Config{Size: 16, Desc: dc.Desc, Avail: dc.Avail, Used: dc.Used, InOrderTX: inOrder}
		q, err := NewQueue(oneRegion(t, testBase, mem), c, 0)
		if err != nil {
			t.Fatal(err)
		}
		chains := NewChains(16, 4)
		for round := 0; round < 40; round++ {
			var heads []uint16
			for i := 0; i < 1+round%7; i++ {
				h, err := drv.AddChain([][]byte{{byte(i)}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				heads = append(heads, h)
			}
			drv.Publish()
			n, err := q.PopBatch(chains)
			if err != nil || n != len(heads) {
				t.Fatalf("popped %d, %v", n, err)
			}
			used := make([]Used, n)
			for i := range used {
				used[i] = Used{Head: chains[i].Head}
			}
			first := q.NextUsed()
			q.PushBatch(used)
			if q.NextUsed() != first+uint16(n) {
				t.Fatalf("used.idx %d after %d chains from %d", q.NextUsed(), n, first)
			}
			off := 4 + 8*int(first%16)
			if got := uint16(le32(drv.Mem(dc.Used, 4+8*16)[off:])); got != heads[n-1] && inOrder {
				t.Fatalf("in-order batch: element at %d holds head %d, want the last, %d", first, got, heads[n-1])
			}
			cs := drv.UsedAll()
			if len(cs) != n {
				t.Fatalf("driver got %d completions, want %d", len(cs), n)
			}
			for i, c := range cs {
				if c.Head != heads[i] || !c.Known || c.Len != 0 {
					t.Fatalf("completion %d: %+v, want head %d", i, c, heads[i])
				}
			}
		}
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
