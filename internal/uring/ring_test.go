package uring

import (
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestNewRefusesBadSizes(t *testing.T) {
	for _, n := range []int{0, 3, MaxEntries * 2} {
		if r, err := New(n); err == nil || !strings.Contains(err.Error(), "power of two") {
			if r != nil {
				r.Close()
			}
			t.Errorf("New(%d): %v, want a power-of-two error", n, err)
		}
	}
}

// TestReadWriteFixedFile writes through a pipe and reads it back through
// one ring, the pipe's ends registered in turn as fixed file 0, and checks
// that RWF_NOWAIT on the empty pipe completes with EAGAIN instead of
// parking the read.
func TestReadWriteFixedFile(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	run := func(fd int, op uint8, buf []byte) int32 {
		t.Helper()
		r, err := New(4)
		if err != nil {
			t.Fatalf("io_uring: %v", err)
		}
		defer r.Close()
		if err := r.RegisterFile(fd); err != nil {
			t.Fatal(err)
		}
		tail := r.Tail()
		*r.Entry(tail) = SQE{Opcode: op, Flags: FixedFile, Addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), Len: uint32(len(buf)), Off: ^uint64(0), RWFlags: NoWait, UserData: 7}
		r.Publish(tail + 1)
		if e := r.Enter(1, 1); e != 0 {
			t.Fatalf("enter: %v", e)
		}
		head, ctail := r.Completions()
		if ctail-head != 1 {
			t.Fatalf("%d completions, want 1", ctail-head)
		}
		c := *r.Completion(head)
		r.Consumed(ctail)
		if c.UserData != 7 {
			t.Fatalf("user data %d, want 7", c.UserData)
		}
		return c.Res
	}
	buf := make([]byte, 16)
	if res := run(p[0], OpRead, buf); res != -int32(unix.EAGAIN) {
		t.Fatalf("read of an empty pipe: %d, want -EAGAIN", res)
	}
	if res := run(p[1], OpWrite, []byte("hello")); res != 5 {
		t.Fatalf("write: %d, want 5", res)
	}
	if res := run(p[0], OpRead, buf); res != 5 || string(buf[:5]) != "hello" {
		t.Fatalf("read: %d %q, want 5 \"hello\"", res, buf[:5])
	}
}
