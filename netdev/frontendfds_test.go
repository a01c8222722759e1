package netdev

import (
	"encoding/binary"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv names the test a re-executed test binary runs as the child of
// inChild.
const childEnv = "VHOSTD_NETDEV_TEST_CHILD"

// inChild runs the calling test again in a child process and reports
// whether the caller is that child (then it goes on with the test body).
// The parent fails the test if the child fails, dies (a fault that kills
// the process) or does not exit within limit (a hang that stops the Go
// runtime: no timer of the child's own could fire). The child's log
// streams with -test.v, so the last step it reached is in the output.
func inChild(t *testing.T, limit time.Duration) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out := &limitedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child process: %v\n%s", err, out)
		}
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("child process hung for %v (killed)\n%s", limit, out)
	}
	return false
}

// limitedBuffer keeps the last 64 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 64<<10 {
		l.b = l.b[len(l.b)-64<<10:]
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

// maxEventfdCount is the largest count an eventfd holds: with it, a write
// of 1 waits for a read.
const maxEventfdCount = 0xfffffffffffffffe

// sendTXNoWait queues n frames on ring 1 and kicks, and waits (without
// reading the call eventfd) until the n chains are back.
func (r *devRig) sendTXNoWait(t *testing.T, n int) {
	t.Helper()
	tx := r.fe.Ring(1).Driver
	for i := 0; i < n; i++ {
		if _, err := tx.AddChain([][]byte{make([]byte, 12), make([]byte, 60)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Publish()
	r.fe.Kick(1)
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		got += len(tx.UsedAll())
		time.Sleep(time.Millisecond)
	}
	if got != n {
		t.Fatalf("%d of %d TX chains returned", got, n)
	}
}

// hostileFds runs traffic after the front-end, which shares the open file
// descriptions of the fds it sent, turned them against vhostd with spoil;
// then the runtime must still stop the world (a GC), and GET_VRING_BASE
// and Close must complete. Run in a child process: a worker blocked in a
// RawSyscall would stop the runtime, the test's timers included. It
// returns the closed device's rig (its counters stay readable).
func hostileFds(t *testing.T, spoil func(t *testing.T, r *devRig)) *devRig {
	t.Helper()
	// Without EVENT_IDX the guest asks for a call after every batch.
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures()&^bit(FEventIdx))
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)
	spoil(t, r)
	t.Log("traffic after the front-end spoiled its fds")
	r.sendTXNoWait(t, 20)
	r.sendTXNoWait(t, 20)
	t.Log("runtime.GC")
	runtime.GC()
	r.getBases(t, 2)
	t.Log("Close")
	r.dev.Close()
	return r
}

// TestBadInput62BlockingCallFd: the front-end clears O_NONBLOCK on a
// call and an error eventfd it sent (the flag lives on the open file
// description it shares with vhostd) and fills the call counter to its
// maximum, so that a write of 1 would wait for the front-end to read. The
// worker's call must not block (in a RawSyscall it would hold its P, and
// the next stop-the-world would wait forever): it is refused, counted
// calls_deferred, and traffic, a GC, GET_VRING_BASE and Close go on.
func TestBadInput62BlockingCallFd(t *testing.T) {
	if !inChild(t, 60*time.Second) {
		return
	}
	r := hostileFds(t, func(t *testing.T, r *devRig) {
		for _, fd := range []int{r.fe.Ring(1).Call, r.fe.Ring(1).Err} {
			if err := unix.SetNonblock(fd, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := unix.Write(r.fe.Ring(1).Call, u64b(maxEventfdCount)); err != nil {
			t.Fatal(err)
		}
	})
	if st := r.dev.Stats()[0].Values; st["calls_deferred"] == 0 {
		t.Fatalf("no calls_deferred with the call counter saturated: %v", st)
	}
}

// TestBadInput62BlockingKickFd: the front-end clears O_NONBLOCK on the
// kick eventfds after the rings started (pair.start set it): the worker's
// drain of a kick with nothing pending must not wait for one.
func TestBadInput62BlockingKickFd(t *testing.T) {
	if !inChild(t, 60*time.Second) {
		return
	}
	hostileFds(t, func(t *testing.T, r *devRig) {
		for i := 0; i < 2; i++ {
			if err := unix.SetNonblock(r.fe.Ring(i).Kick, false); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestBadInput62UnstuckWorker: a worker blocked in a call write (the
// front-end saturated its counter and cleared O_NONBLOCK between
// SignalShared's poll and its write, a race the front-end can win) would
// keep the control plane's Pause or Stop waiting forever. unstuck drains
// the saturated call eventfd while it waits: the write goes through, the
// wait returns, and the front-end still finds its call fd readable.
func TestBadInput62UnstuckWorker(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC) // blocking
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, u64b(maxEventfdCount)); err != nil {
		t.Fatal(err)
	}
	p := newPair(&Device{}, 0, nil)
	p.rings[rxRing].spec.Call, p.rings[rxRing].spec.Err = -1, -1
	p.rings[txRing].spec.Call, p.rings[txRing].spec.Err = fd, -1
	r := &pairWorker{p: p}
	returned := make(chan struct{})
	go func() {
		// What a worker stuck in the write does: wait for a read.
		r.unstuck(func() { unix.Write(fd, u64b(1)) })
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("a wait behind a blocked call write did not return within 5 s")
	}
	b := make([]byte, 8)
	if n, err := unix.Read(fd, b); err != nil || n != 8 || binary.LittleEndian.Uint64(b) != 1 {
		t.Fatalf("call counter after unstuck: %x, %v; want 1", b, err)
	}
}

// u64b is v as an eventfd write takes it.
func u64b(v uint64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return b[:]
}
