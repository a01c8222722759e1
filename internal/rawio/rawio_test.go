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

// maxCount is the largest value an eventfd's counter can hold: one more
// and a write waits for a read.
const maxCount = 0xfffffffffffffffe

func counterBytes(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// TestSharedNeverBlocks: the peer that shares an eventfd's file
// description cleared O_NONBLOCK (here: the eventfd was made blocking) and
// saturated the counter, or left it empty. SignalShared must refuse with
// EAGAIN instead of waiting for a read, DrainShared must return EAGAIN
// instead of waiting for a write; a pipe nobody reads, passed as a call
// fd, likewise. With Signal and Drain each of these calls would hang the
// test (and hold its P).
func TestSharedNeverBlocks(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC) // blocking, as a peer can make it
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if v, e := DrainShared(fd); v != 0 || e != unix.EAGAIN {
		t.Fatalf("DrainShared of an empty blocking eventfd = %d, %v; want 0, EAGAIN", v, e)
	}
	if e := SignalShared(fd); e != 0 {
		t.Fatalf("SignalShared of an empty blocking eventfd: %v", e)
	}
	if _, err := unix.Write(fd, counterBytes(maxCount-1)); err != nil {
		t.Fatal(err)
	}
	if e := SignalShared(fd); e != unix.EAGAIN {
		t.Fatalf("SignalShared of a saturated blocking eventfd: %v, want EAGAIN", e)
	}
	if v, e := DrainShared(fd); v != maxCount || e != 0 {
		t.Fatalf("DrainShared = %#x, %v; want %#x (the refused signal added nothing)", v, e, uint64(maxCount))
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if v, e := DrainShared(p[0]); v != 0 || e != unix.EAGAIN {
		t.Fatalf("DrainShared of an empty blocking pipe = %d, %v; want 0, EAGAIN", v, e)
	}
	unix.SetNonblock(p[1], true)
	for {
		if _, err := unix.Write(p[1], make([]byte, 4096)); err != nil {
			break
		}
	}
	unix.SetNonblock(p[1], false)
	if e := SignalShared(p[1]); e != unix.EAGAIN {
		t.Fatalf("SignalShared of a full blocking pipe: %v, want EAGAIN", e)
	}
}

func TestSharedZeroAllocs(t *testing.T) {
	fd := eventfd(t)
	n := testing.AllocsPerRun(100, func() {
		SignalShared(fd)
		DrainShared(fd)
	})
	if n != 0 {
		t.Fatalf("%v allocations per round, want 0", n)
	}
}

// BenchmarkSignalDrain is one signal and one drain of an eventfd: the
// RawSyscall pair for vhostd's own fds, and the shared pair (poll and
// write through Syscall, preadv2 RWF_NOWAIT) for a front-end's.
func BenchmarkSignalDrain(b *testing.B) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	b.Run("own", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Signal(fd)
			Drain(fd)
		}
	})
	b.Run("shared", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			SignalShared(fd)
			DrainShared(fd)
		}
	})
	b.Run("shared-signal", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			SignalShared(fd)
		}
	})
	b.Run("own-signal", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Signal(fd)
		}
	})
	Drain(fd)
}
