package netdev

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/pcapng"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// capturedFrame is one frame read back from a capture file.
type capturedFrame struct {
	iface    int
	data     []byte
	orig     int
	comments string
}

// readCapture opens a capture file with gopacket's pcapng reader.
func readCapture(t testing.TB, path string) []capturedFrame {
	t.Helper()
	fs, err := pcapng.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []capturedFrame
	for _, f := range fs {
		out = append(out, capturedFrame{f.Iface, f.Data, f.OrigLen, strings.Join(f.Comments, " | ")})
	}
	return out
}

// findFrame returns the captured frame on iface whose bytes are data.
func findFrame(t testing.TB, fs []capturedFrame, iface int, data []byte) capturedFrame {
	t.Helper()
	for _, f := range fs {
		if f.iface == iface && bytes.Equal(f.data, data) {
			return f
		}
	}
	for _, f := range fs {
		t.Logf("iface %d len %d orig %d %q", f.iface, len(f.data), f.orig, f.comments)
	}
	t.Fatalf("no frame of %d bytes on interface %d in the capture (%d frames)", len(data), iface, len(fs))
	return capturedFrame{}
}

// TestCaptureBothWaysAndDrops: a capture holds the guest's TX frames and
// the frames given to the guest, each with its virtio-net header decoded,
// and the frames vhostd dropped with the counter that counted them: a TX
// frame over the largest allowed (tx_oversize) and an RX frame larger
// than the guest's buffer (rx_truncated). The file opens with pcapgo.
func TestCaptureBothWaysAndDrops(t *testing.T) {
	noGSO := bit(FHostTSO4) | bit(FHostTSO6) | bit(FHostUFO) | bit(FHostUSO) | bit(FMrgRxbuf)
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures()&^noGSO)
	path := filepath.Join(t.TempDir(), "cap-"+testutil.Suffix(6)+".pcapng")
	if err := r.dev.StartCapture(CaptureConfig{Path: path}); err != nil {
		t.Fatal(err)
	}
	if got := r.dev.Capturing(); got != path {
		t.Fatalf("Capturing() = %q", got)
	}
	txHdr := hdrBytes(tap.VnetHdr{Flags: tap.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 6})
	good := testutil.PatternFrame(100, 1)
	big := testutil.PatternFrame(1600, 2)
	tx := r.fe.Ring(1).Driver
	for _, f := range [][]byte{good, big} {
		if _, err := tx.AddChain([][]byte{txHdr, f}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if tx.Publish() {
		r.fe.Kick(1)
	}
	r.host.peerRead(t, 0, 5*time.Second)
	rx := r.fe.Ring(0).Driver
	for i := 0; i < 4; i++ {
		rx.AddChain(nil, []int{1024})
	}
	if rx.Publish() {
		r.fe.Kick(0)
	}
	in := testutil.PatternFrame(200, 3)
	over := testutil.PatternFrame(3000, 4)
	rxHdr := hdrBytes(tap.VnetHdr{Flags: tap.VirtioNetHdrFDataValid})
	for _, f := range [][]byte{in, over} {
		if _, err := unix.Write(r.host.peers[0], append(append([]byte{}, rxHdr...), f...)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 2 && time.Now().Before(deadline); {
		r.fe.WaitCall(0, 100*time.Millisecond)
		n += len(rx.UsedAll())
	}
	if err := r.dev.StopCapture(); err != nil {
		t.Fatal(err)
	}
	fs := readCapture(t, path)
	if len(fs) != 4 {
		t.Fatalf("%d frames captured, want 4: %+v", len(fs), fs)
	}
	if c := findFrame(t, fs, 1, good).comments; c != "vnet hdr: flags=needs_csum gso_type=none hdr_len=0 gso_size=0 csum_start=34 csum_offset=6" {
		t.Errorf("TX frame comment %q", c)
	}
	if f := findFrame(t, fs, 1, big); f.orig != 1600 || !strings.HasSuffix(f.comments, "dropped: tx_oversize") {
		t.Errorf("oversized TX frame: length %d, comment %q", f.orig, f.comments)
	}
	if c := findFrame(t, fs, 0, in).comments; c != "vnet hdr: flags=data_valid gso_type=none hdr_len=0 gso_size=0 csum_start=0 csum_offset=0 num_buffers=1" {
		t.Errorf("RX frame comment %q", c)
	}
	// Cut at the default snap length, 2048.
	if f := findFrame(t, fs, 0, over[:DefaultSnaplen]); f.orig != 3000 || !strings.HasSuffix(f.comments, "dropped: rx_truncated (frame larger than the guest's buffers)") {
		t.Errorf("oversized RX frame: length %d, comment %q", f.orig, f.comments)
	}
}

// TestCaptureRefusals: a second start, a stop with none running, a path
// that cannot be written, a symlink and a FIFO are refused, each error
// naming the path; a refused start leaves the device capturing nothing.
func TestCaptureRefusals(t *testing.T) {
	r := startDevice(t, Config{QueuePairs: 1}, allFeatures())
	dir := t.TempDir()
	if err := r.dev.StopCapture(); !errors.Is(err, ErrNoCapture) {
		t.Fatalf("stop with none running: %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "target"), link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(dir, "no/such/dir/x.pcapng"), link, fifo, dir} {
		err := r.dev.StartCapture(CaptureConfig{Path: bad})
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("start %s: %v, want an error naming it", bad, err)
		}
		if r.dev.Capturing() != "" {
			t.Fatalf("a refused start left a capture running")
		}
	}
	if err := r.dev.StartCapture(CaptureConfig{Path: filepath.Join(dir, "a"), Snaplen: 10}); err == nil || !strings.Contains(err.Error(), "snaplen: 10") {
		t.Errorf("snaplen 10: %v", err)
	}
	one := filepath.Join(dir, "one")
	if err := r.dev.StartCapture(CaptureConfig{Path: one}); err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two")
	if err := r.dev.StartCapture(CaptureConfig{Path: two}); !errors.Is(err, ErrCaptureRunning) || !strings.Contains(err.Error(), one) {
		t.Errorf("second start: %v", err)
	}
	if _, err := os.Stat(two); err == nil {
		t.Errorf("a refused second start created %s", two)
	}
	if err := r.dev.StopCapture(); err != nil {
		t.Fatal(err)
	}
	if fs := readCapture(t, one); len(fs) != 0 {
		t.Errorf("%d frames in an idle capture", len(fs))
	}
}

// TestCapturePathsZeroAllocs: with capture off, and with it on (frames
// copied into the ring until it is full, then counted as capture_dropped),
// a steady stream of frames both ways allocates nothing.
func TestCapturePathsZeroAllocs(t *testing.T) {
	frame := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(60, 1)...)
	for _, on := range []bool{false, true} {
		ring := newCapRing(DefaultSnaplen)
		rt := newRig(t, 256, 2048, true)
		tx := newTxPath()
		tx.reset(rt.q, 1518)
		rr := newRig(t, 256, 2048, true)
		rx := newRxPath()
		rx.reset(rr.q, true, 1530)
		// 100 free slots: the ring fills during the run.
		const start = capSlots - 100
		ring.ptail = start
		ring.tail.Store(start)
		if on {
			tx.capture.ring.Store(ring)
			rx.capture.ring.Store(ring)
		}
		for i := 0; i < 250; i++ {
			rt.drv.AddChain([][]byte{frame}, nil)
			rr.drv.AddChain(nil, []int{2048})
		}
		rt.drv.Publish()
		rr.drv.Publish()
		allocs := testing.AllocsPerRun(30, func() {
			tx.pop(8, &rt.c)
			tx.toTAP(rt.tq, true, &rt.c)
			tx.complete()
			for i := 0; i < 4; i++ {
				unix.Write(rr.peer, frame)
			}
			rx.refill(8, &rr.c)
			rx.fromTAP(rr.tq, 8, &rr.c)
			rx.complete()
		})
		if allocs != 0 {
			t.Errorf("capture on=%v: the paths allocate %.1f times per batch", on, allocs)
		}
		kept := ring.tail.Load() - start
		dropped := rt.c.local[cCaptureDropped] + rr.c.local[cCaptureDropped]
		moved := rt.c.local[cTxPackets] + rr.c.local[cRxPackets]
		if on && (kept != 100 || kept+dropped != moved) {
			t.Errorf("captured %d, capture_dropped %d, of %d frames moved; want 100 kept", kept, dropped, moved)
		}
		if !on && kept+dropped != 0 {
			t.Errorf("capture off: %d frames captured, %d dropped", kept, dropped)
		}
	}
}

// BenchmarkCaptureTX64 is one 64-byte guest frame through the TX path per
// op (pop, the TAP write, the used entry; the guest reposts it), with
// capture off and on. With it on a goroutine empties the capture ring as
// the writer does, without writing a file: the figure is the data path's
// cost of the copy. Compare the two, not the absolute figures (perf/ has
// those).
func BenchmarkCaptureTX64(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("capture=%v", on), func(b *testing.B) {
			r := newRig(b, 256, 2048, true)
			tx := newTxPath()
			tx.reset(r.q, 1518)
			if on {
				ring := newCapRing(DefaultSnaplen)
				tx.capture.ring.Store(ring)
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						ring.head.Store(ring.tail.Load())
						time.Sleep(100 * time.Microsecond)
					}
				}()
			}
			frame := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(64, 1)...)
			for i := 0; i < 128; i++ {
				r.drv.AddChain([][]byte{frame}, nil)
			}
			r.drv.Publish()
			buf := make([]byte, 2048)
			b.ResetTimer()
			for i := 0; i < b.N; i += 32 {
				tx.pop(32, &r.c)
				n, _ := tx.toTAP(r.tq, true, &r.c)
				tx.complete()
				for k := 0; k < n; k++ {
					unix.Read(r.peer, buf)
				}
				for {
					if _, ok := r.drv.Used(); !ok {
						break
					}
					r.drv.AddChain([][]byte{frame}, nil)
				}
				r.drv.Publish()
			}
			b.StopTimer()
			if on && r.c.local[cCaptureDropped] > r.c.local[cTxPackets]/2 {
				b.Logf("capture_dropped %d of %d", r.c.local[cCaptureDropped], r.c.local[cTxPackets])
			}
		})
	}
}

// TestCaptureTXDropReasons: each way toTAP drops a frame is captured with
// the counter that counted it and its cause: a header that lies
// (tx_malformed), an offload never negotiated (tx_offload_refused), a
// disabled ring (tx_discarded), a TAP gone (tx_dropped_tap), and a TAP
// refusing the write (tx_dropped_tap_full on EAGAIN).
func TestCaptureTXDropReasons(t *testing.T) {
	good := append(hdrBytes(tap.VnetHdr{}), testutil.PatternFrame(60, 1)...)
	lying := append(hdrBytes(tap.VnetHdr{Flags: tap.VirtioNetHdrFNeedsCsum, CsumStart: 200, CsumOffset: 16}), testutil.PatternFrame(60, 2)...)
	tso := append(hdrBytes(tap.VnetHdr{GSOType: tap.VirtioNetHdrGSOTCPv4, GSOSize: 1000, HdrLen: 54, Flags: tap.VirtioNetHdrFNeedsCsum, CsumStart: 34, CsumOffset: 16}), testutil.PatternFrame(60, 3)...)
	for _, tc := range []struct {
		name    string
		frame   []byte
		enabled bool
		gone    bool
		full    bool
		want    string
	}{
		{"sent", good, true, false, false, ""},
		{"lying header", lying, true, false, false, "dropped: tx_malformed"},
		{"offload refused", tso, true, false, false, "dropped: tx_offload_refused"},
		{"disabled ring", good, false, false, false, "dropped: tx_discarded (ring started but disabled)"},
		{"tap gone", good, true, true, false, "dropped: tx_dropped_tap (TAP gone)"},
		{"tap full", good, true, false, true, "dropped: tx_dropped_tap_full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 64, 4096, false)
			tx := newTxPath()
			tx.reset(r.q, 1518)
			ring := newCapRing(DefaultSnaplen)
			tx.capture.ring.Store(ring)
			if tc.full {
				// Fill the stand-in's socket until a write says EAGAIN.
				unix.SetsockoptInt(r.peer, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
				for {
					if _, err := unix.Write(r.tq.Fd(), good); err != nil {
						break
					}
				}
			}
			r.drv.AddChain([][]byte{tc.frame}, nil)
			r.drv.Publish()
			tx.pop(budget, &r.c)
			q := r.tq
			if tc.gone {
				q = nil
			}
			tx.toTAP(q, tc.enabled, &r.c)
			if ring.tail.Load() != 1 {
				t.Fatalf("%d frames captured, want 1", ring.tail.Load())
			}
			f := slotFrame(0, &ring.slots[0])
			if f.Iface != 1 || !bytes.Equal(f.Data, tc.frame[tap.VnetHdrLen:]) {
				t.Errorf("captured on interface %d: %x", f.Iface, f.Data)
			}
			last := f.Comments[len(f.Comments)-1]
			if tc.want == "" && strings.Contains(last, "dropped") || tc.want != "" && last != tc.want {
				t.Errorf("comments %q, want the last %q", f.Comments, tc.want)
			}
		})
	}
}
