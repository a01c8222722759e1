package virtqueue

import (
	"bytes"
	"errors"
	"testing"
)

func TestPopPushRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		indirect bool
	}{{"direct", false}, {"indirect", true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRing(t, 8, ringOpts{indirect: true})
			add := r.drv.AddChain
			if tc.indirect {
				add = r.drv.AddChainIndirect
			}
			h, err := add([][]byte{[]byte("hello "), []byte("world")}, []int{4, 100})
			if err != nil {
				t.Fatal(err)
			}
			r.drv.Publish()
			cs := NewChains(4, 8)
			n, err := r.q.PopBatch(cs)
			if n != 1 || err != nil {
				t.Fatalf("PopBatch = %d, %v", n, err)
			}
			c := &cs[0]
			if c.Err != nil || c.Head != h || c.OutLen != 11 || c.InLen != 104 || len(c.Out) != 2 || len(c.In) != 2 {
				t.Fatalf("chain %+v", c)
			}
			if got := string(bytes.Join(c.Out, nil)); got != "hello world" {
				t.Fatalf("out %q", got)
			}
			copy(c.In[0], "abcd")
			copy(c.In[1], "ef")
			r.q.PushBatch([]Used{{Head: c.Head, Len: 6}})
			u, ok := r.drv.Used()
			if !ok || u.Head != h || u.Len != 6 || string(u.Written) != "abcdef" {
				t.Fatalf("used %+v %v", u, ok)
			}
			if n, err := r.q.PopBatch(cs); n != 0 || err != nil {
				t.Fatalf("empty PopBatch = %d, %v", n, err)
			}
			if r.q.NextAvail() != 1 || r.q.NextUsed() != 1 {
				t.Fatalf("indices %d %d", r.q.NextAvail(), r.q.NextUsed())
			}
		})
	}
}

func TestBrokenMatches(t *testing.T) {
	for _, e := range []error{ErrAvailIndex, ErrHeadRange, ErrNextRange, ErrDescLoop, ErrIndirect, ErrRingUnmapped} {
		if !errors.Is(e, ErrBroken) {
			t.Errorf("%v does not match ErrBroken", e)
		}
	}
	for _, e := range []error{ErrBufferRange, ErrChainTooLong, ErrOrder, ErrTooManySegments} {
		if errors.Is(e, ErrBroken) {
			t.Errorf("%v matches ErrBroken", e)
		}
	}
}
