package netdev

import (
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"github.com/vhostd/vhostd/virtqueue"
	"github.com/vhostd/vhostd/virtqueue/vqdriver"
	"golang.org/x/sys/unix"
)

// TestBadInput64GuestMemoryTruncated: the front-end truncates the memfd
// that holds queue pair 0's rings and buffers after SET_MEM_TABLE, and
// kicks. The worker's next touch of that memory raises SIGBUS: the process
// must survive it (before, Go's fault killed it), pair 0's rings report
// broken (rx/tx_queue_broken, guest_memory_faults, the error eventfd), pair
// 1, in another region, keeps moving frames, and GET_VRING_BASE on every
// ring and Close complete. In a child process: the fault used to kill the
// process.
func TestBadInput64GuestMemoryTruncated(t *testing.T) {
	if !inChild(t, 120*time.Second) {
		return
	}
	// Region A holds exactly rings 0 and 1 (LayoutRing fills regions in
	// order), region B rings 2 and 3.
	const slab = 2048
	c0 := vqdriver.Layout(256, 0, slab)
	sizeA := (vqdriver.Layout(256, c0.End(), slab).End() + 4095) &^ 4095
	r := startDevice(t, Config{QueuePairs: 2}, allFeatures(),
		vhosttest.Layout{GPA: 0, Size: sizeA}, vhosttest.Layout{GPA: 1 << 30, Size: 32 << 20})
	if reg := r.fe.Regions()[1]; r.fe.Ring(2).Config.Desc < reg.GPA {
		t.Fatalf("ring 2 at %#x is not in region B (%#x)", r.fe.Ring(2).Config.Desc, reg.GPA)
	}
	for _, ring := range []int{1, 3} {
		r.sendTXOn(t, ring, 8)
	}
	t.Log("truncating region A")
	if err := unix.Ftruncate(r.fe.Regions()[0].Fd, 0); err != nil {
		t.Fatal(err)
	}
	// From here the test does not touch rings 0 and 1 either.
	r.fe.Kick(1)
	r.fe.Kick(0)
	broken := func() bool {
		st := r.dev.Stats()[0].Values
		return st["tx_queue_broken"] == 1 && st["rx_queue_broken"] == 1 && st["guest_memory_faults"] == 1
	}
	if !testutil.WaitFor(5*time.Second, 10*time.Millisecond, broken) {
		t.Fatalf("pair 0 not broken 5 s after its memory went: %v", r.dev.Stats()[0].Values)
	}
	for _, ring := range []int{0, 1} {
		if !waitReadable(r.fe.Ring(ring).Err, time.Second) {
			t.Errorf("ring %d's error eventfd was not signalled", ring)
		}
	}
	t.Log("pair 1 after the fault")
	r.sendTXOn(t, 3, 8)
	if st := r.dev.Stats()[1].Values; st["tx_queue_broken"] != 0 || st["tx_packets"] != 16 {
		t.Fatalf("pair 1: %v", st)
	}
	r.fe.Kick(1) // a faulted pair ignores kicks and does not spin
	assertIdleCPU(t)
	r.getBases(t, 4)
	t.Log("Close")
	r.dev.Close()
}

// getBases sends GET_VRING_BASE for rings 0 to n-1, each of which must
// answer.
func (r *devRig) getBases(t *testing.T, n int) {
	t.Helper()
	t.Log("GET_VRING_BASE")
	for i := 0; i < n; i++ {
		if _, err := r.fe.GetVringBase(i); err != nil {
			t.Fatal(err)
		}
	}
}

// sendTXOn queues n frames on TX ring i, kicks, waits until they are
// back and reads them from the pair's TAP queue.
func (r *devRig) sendTXOn(t *testing.T, i, n int) {
	t.Helper()
	tx := r.fe.Ring(i).Driver
	for k := 0; k < n; k++ {
		if _, err := tx.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(100, byte(k))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Publish()
	r.fe.Kick(i)
	r.waitReturned(t, i, n)
	for k := 0; k < n; k++ {
		r.host.peerRead(t, i/2, 5*time.Second)
	}
}

// TestBadInput64DirtyLogTruncated: the dirty log is a front-end memfd
// too. Truncated under a migrating guest, the worker's next mark faults:
// the pair breaks as for guest memory and the process survives; the
// control plane's GET_VRING_BASE and Close complete. In a child process.
func TestBadInput64DirtyLogTruncated(t *testing.T) {
	if !inChild(t, 60*time.Second) {
		return
	}
	fd, err := unix.MemfdCreate("vhostd-test-log"+testutil.Suffix(6), unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const logSize = 1 << 16 // pages of 4 KiB up to 2 GiB
	if err := unix.Ftruncate(fd, logSize); err != nil {
		t.Fatal(err)
	}
	bits, err := unix.Mmap(fd, 0, logSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(bits) }) // after the device's own cleanup
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures())
	r.dev.SetDirtyLog(virtqueue.NewDirtyLog(bits))
	r.dev.SetRingLog(1, true, r.fe.Ring(1).Config.Used)
	r.sendTXOn(t, 1, 4)
	t.Log("truncating the log")
	if err := unix.Ftruncate(fd, 0); err != nil {
		t.Fatal(err)
	}
	r.fe.Ring(1).Driver.AddChain([][]byte{make([]byte, 12), testutil.PatternFrame(100, 1)}, nil)
	r.fe.Ring(1).Driver.Publish()
	r.fe.Kick(1)
	broken := func() bool { return r.dev.Stats()[0].Values["guest_memory_faults"] == 1 }
	if !testutil.WaitFor(5*time.Second, 10*time.Millisecond, broken) {
		t.Fatalf("no fault 5 s after the log went: %v", r.dev.Stats()[0].Values)
	}
	r.getBases(t, 2)
	r.dev.SetDirtyLog(nil)
	t.Log("Close")
	r.dev.Close()
}

// TestBadInput64RXBuffersTruncated: the TAP side's readv into guest
// buffers whose memfd was truncated fails with EFAULT (the kernel's copy
// faults, no SIGBUS): that too breaks the pair, instead of dropping every
// frame the TAP gets, unseen (the guest does not kick). Region A holds RX
// ring 0 alone and loses its buffers but keeps the ring's own pages, so
// the ring side's pops do not fault first; pair 0's TX ring and pair 1
// are in region B, and pair 1 keeps working.
func TestBadInput64RXBuffersTruncated(t *testing.T) {
	if !inChild(t, 60*time.Second) {
		return
	}
	const slab = 2048
	c0 := vqdriver.Layout(256, 0, slab)
	sizeA := (c0.End() + 4095) &^ 4095
	r := startDevice(t, Config{QueuePairs: 2}, allFeatures(),
		vhosttest.Layout{GPA: 0, Size: sizeA}, vhosttest.Layout{GPA: 1 << 30, Size: 32 << 20})
	if reg := r.fe.Regions()[1]; r.fe.Ring(1).Config.Desc < reg.GPA {
		t.Fatalf("ring 1 at %#x is not in region B (%#x)", r.fe.Ring(1).Config.Desc, reg.GPA)
	}
	rx := r.fe.Ring(0).Driver
	for i := 0; i < 15; i++ {
		if _, err := rx.AddChain(nil, []int{2048}); err != nil {
			t.Fatal(err)
		}
	}
	r.offerRXExpect(t) // the 16th buffer; the ring side stocked them all
	// The first frame filled the first buffer; the next ones start past
	// the page that holds the heap's start, which the truncation keeps
	// with the ring's descriptors, avail and used rings.
	keep := int64(c0.Heap+4095) &^ 4095
	if c0.Heap+slab <= uint64(keep) {
		t.Fatalf("buffer 1 at %#x lies in the kept pages (up to %#x)", c0.Heap+slab, keep)
	}
	t.Logf("truncating region A to %#x", keep)
	if err := unix.Ftruncate(r.fe.Regions()[0].Fd, keep); err != nil {
		t.Fatal(err)
	}
	frame := append(make([]byte, 12), testutil.PatternFrame(80, 3)...)
	for i := 0; i < 4; i++ {
		if _, err := unix.Write(r.host.peers[0], frame); err != nil {
			t.Fatal(err)
		}
	}
	broken := func() bool {
		st := r.dev.Stats()[0].Values
		return st["rx_queue_broken"] == 1 && st["tx_queue_broken"] == 1 && st["guest_memory_faults"] == 1
	}
	if !testutil.WaitFor(5*time.Second, 10*time.Millisecond, broken) {
		t.Fatalf("pair 0 not broken 5 s after its RX buffers went: %v", r.dev.Stats()[0].Values)
	}
	r.sendTXOn(t, 3, 8)
	r.getBases(t, 4)
	r.dev.Close()
}
