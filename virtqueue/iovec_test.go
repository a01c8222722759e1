package virtqueue

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAppendIovecs(t *testing.T) {
	r := newTestRing(t, 8, ringOpts{})
	r.drv.AddChain([][]byte{[]byte("ab"), []byte("cde")}, []int{0, 7})
	r.drv.Publish()
	cs, _ := r.pop(1)
	dst := make([]unix.Iovec, 0, cs[0].MaxSegs())
	out := AppendIovecs(dst, cs[0].Out)
	if len(out) != 2 || out[0].Len != 2 || out[1].Len != 3 || out[0].Base != &cs[0].Out[0][0] {
		t.Fatalf("out iovecs %+v", out)
	}
	in := AppendIovecs(out[:0], cs[0].In) // zero-length buffer skipped
	if len(in) != 1 || in[0].Len != 7 {
		t.Fatalf("in iovecs %+v", in)
	}
	if got := unsafe.Slice(in[0].Base, in[0].Len); &got[0] != &cs[0].In[0][0] {
		t.Fatal("iovec does not point at the buffer")
	}
	if a := testing.AllocsPerRun(100, func() { AppendIovecs(dst[:0], cs[0].Out) }); a != 0 {
		t.Fatalf("AppendIovecs allocates %v", a)
	}
}
