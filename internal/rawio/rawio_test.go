package rawio

import (
	"testing"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestAppendIovecsSkipsEmpty(t *testing.T) {
	a, b := []byte("ab"), []byte("cde")
	iov := AppendIovecs(make([]unix.Iovec, 0, 3), [][]byte{a, nil, b, {}})
	if len(iov) != 2 {
		t.Fatalf("got %d iovecs, want 2", len(iov))
	}
	if iov[0].Base != &a[0] || iov[0].Len != 2 || iov[1].Base != &b[0] || iov[1].Len != 3 {
		t.Fatalf("iovecs %+v do not cover a and b", iov)
	}
}

func TestWritevReadv(t *testing.T) {
	r, w := pipe(t)
	for _, bufs := range [][][]byte{
		{[]byte("one")},                          // write(2)
		{[]byte("tw"), []byte("o"), []byte("3")}, // writev(2)
	} {
		want := 0
		for _, b := range bufs {
			want += len(b)
		}
		n, e := Writev(w, AppendIovecs(nil, bufs))
		if e != 0 || n != want {
			t.Fatalf("Writev = %d, %v; want %d", n, e, want)
		}
		if ok, e := Readable(r); !ok || e != 0 {
			t.Fatalf("Readable = %v, %v after a write", ok, e)
		}
		x, y := make([]byte, 2), make([]byte, 8)
		iov := []unix.Iovec{Iovec(x), Iovec(y)}
		if len(bufs) == 1 {
			iov = iov[1:]
		}
		if n, e := Readv(r, iov); e != 0 || n != want {
			t.Fatalf("Readv = %d, %v; want %d", n, e, want)
		}
	}
	if ok, e := Readable(r); ok || e != 0 {
		t.Fatalf("Readable = %v, %v on an empty pipe", ok, e)
	}
	if _, e := Readv(r, []unix.Iovec{Iovec(make([]byte, 4))}); e != unix.EAGAIN {
		t.Fatalf("Readv on an empty pipe: %v, want EAGAIN", e)
	}
}

func TestWriteRead(t *testing.T) {
	r, w := pipe(t)
	if n, e := Write(w, []byte("frame")); n != 5 || e != 0 {
		t.Fatalf("Write = %d, %v", n, e)
	}
	b := make([]byte, 16)
	if n, e := Read(r, b); n != 5 || e != 0 || string(b[:n]) != "frame" {
		t.Fatalf("Read = %d, %v, %q", n, e, b[:n])
	}
}

func TestSignalDrain(t *testing.T) {
	fd := eventfd(t)
	if v, e := Drain(fd); v != 0 || e != unix.EAGAIN {
		t.Fatalf("Drain of a fresh eventfd = %d, %v; want 0, EAGAIN", v, e)
	}
	for i := 0; i < 3; i++ {
		if e := Signal(fd); e != 0 {
			t.Fatal(e)
		}
	}
	if ok, _ := Readable(fd); !ok {
		t.Fatal("a signalled eventfd is not readable")
	}
	if v, e := Drain(fd); v != 3 || e != 0 {
		t.Fatalf("Drain = %d, %v; want 3", v, e)
	}
}

func TestReadableBadFd(t *testing.T) {
	if ok, e := Readable(-1); ok {
		t.Fatalf("Readable(-1) = true, %v", e)
	}
}

func TestZeroAllocs(t *testing.T) {
	r, w := pipe(t)
	fd := eventfd(t)
	buf := make([]byte, 64)
	iov := make([]unix.Iovec, 0, 2)
	bufs := [][]byte{buf[:10], buf[10:20]}
	n := testing.AllocsPerRun(100, func() {
		iov = AppendIovecs(iov[:0], bufs)
		Writev(w, iov)
		Readable(r)
		Readv(r, iov)
		Signal(fd)
		Drain(fd)
	})
	if n != 0 {
		t.Fatalf("%v allocations per round, want 0", n)
	}
}
