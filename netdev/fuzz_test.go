package netdev

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// fuzzSlab is the slab of each head in the fuzz rigs: room for the largest
// GSO frame and its header in one chain.
const fuzzSlab = 66 << 10

// fuzzRing is the fuzz rigs' ring size, and so the most descriptors one
// fuzzed chain has.
const fuzzRing = 16

// splitAt cuts b into up to fuzzRing pieces whose lengths come from cuts
// (1 to 256 bytes each, the last piece taking the rest).
func splitAt(b, cuts []byte) [][]byte {
	var segs [][]byte
	for _, c := range cuts {
		if len(b) == 0 || len(segs) == fuzzRing-1 {
			break
		}
		n := min(int(c)+1, len(b))
		segs, b = append(segs, b[:n]), b[n:]
	}
	if len(b) > 0 {
		segs = append(segs, b)
	}
	return segs
}

// FuzzTXPrepare posts one guest TX chain (a virtio-net header and a frame,
// cut into descriptors anywhere, the header too) and checks what the TX
// path does with it: the chain always comes back with length 0, and the
// TAP gets either nothing, counted, or exactly the header (num_buffers
// cleared) and the frame. A plain header (no offload) with a frame of a
// legal size is never dropped.
func FuzzTXPrepare(f *testing.F) {
	plain := make([]byte, tap.VnetHdrLen)
	f.Add(append(plain, testutil.PatternFrame(60, 1)...), []byte{3, 200, 0}, false)
	f.Add(append(plain, testutil.PatternFrame(3000, 2)...), []byte{11, 0, 255}, true)
	gso := hdrBytes(tap.VnetHdr{Flags: 1, GSOType: 1, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16})
	f.Add(append(gso, testutil.PatternFrame(9000, 3)...), []byte{5}, true)
	f.Fuzz(func(t *testing.T, data, cuts []byte, big bool) {
		if len(data) == 0 || len(data) > fuzzSlab {
			return
		}
		r := newRig(t, fuzzRing, fuzzSlab, true)
		tx := newTxPath()
		maxFrame := uint32(1518)
		if big {
			maxFrame = maxGSOFrame
		}
		tx.reset(r.q, maxFrame)
		tx.offloads = txOffloads(allFeatures()) // every offload negotiated
		if _, err := r.drv.AddChain(splitAt(data, cuts), nil); err != nil {
			t.Fatal(err)
		}
		r.drv.Publish()
		r.runTX(tx)
		if cs := r.drv.UsedAll(); len(cs) != 1 || cs[0].Len != 0 {
			t.Fatalf("used entries %+v, want one of length 0", cs)
		}
		got := make([]byte, fuzzSlab+1)
		n, err := unix.Read(r.peer, got)
		sent := r.c.local[cTxPackets]
		frame := len(data) - tap.VnetHdrLen
		if err != nil {
			if sent != 0 {
				t.Fatalf("tx_packets %d but the TAP got nothing (%v)", sent, err)
			}
			if frame > 0 && frame <= int(maxFrame) && bytes.Equal(data[:tap.VnetHdrLen], plain) {
				t.Fatalf("a plain %d-byte frame was dropped (counters %v)", frame, r.c.local)
			}
			return
		}
		want := append([]byte{}, data...)
		want[10], want[11] = 0, 0
		if sent != 1 || !bytes.Equal(got[:n], want) {
			t.Fatalf("tx_packets %d; the TAP got %d bytes, want %d: %x", sent, n, len(want), got[:min(n, 64)])
		}
	})
}

// FuzzRXFill writes one frame into the TAP and lets the RX path fill guest
// buffers of fuzzed sizes, MRG_RXBUF on or off. Whatever the sizes, the
// frame is delivered whole (num_buffers naming the chains it took, each
// chain's length within its buffer; a buffer too small for the header
// comes back empty), or counted as truncated, or left in the TAP to wait
// for buffers; never delivered corrupted or lost silently.
func FuzzRXFill(f *testing.F) {
	f.Add(testutil.PatternFrame(60, 1), []byte{255, 255}, true)
	f.Add(testutil.PatternFrame(1500, 2), []byte{10, 20, 30, 200, 200}, true)
	f.Add(testutil.PatternFrame(300, 3), []byte{40}, false)
	f.Fuzz(func(t *testing.T, frame, sizes []byte, mrg bool) {
		if len(frame) == 0 || len(frame) > maxGSOFrame {
			return
		}
		r := newRig(t, fuzzRing, 4096, true)
		rx := newRxPath()
		rx.reset(r.q, mrg, maxGSOFrame+tap.VnetHdrLen)
		size := map[uint16]uint32{}
		for i, s := range sizes {
			if i == fuzzRing {
				break
			}
			n := 1 + int(s)*8
			head, err := r.drv.AddChain(nil, []int{n})
			if err != nil {
				t.Fatal(err)
			}
			size[head] = uint32(n)
		}
		r.drv.Publish()
		if _, err := unix.Write(r.peer, append(hdrBytes(tap.VnetHdr{}), frame...)); err != nil {
			t.Fatal(err)
		}
		r.runRX(rx)
		cs := r.drv.UsedAll()
		var all []byte
		filled := 0 // chains a frame went into; the rest came back empty
		for _, c := range cs {
			if c.Len > size[c.Head] || (size[c.Head] < tap.VnetHdrLen && c.Len != 0) {
				t.Fatalf("chain %d: used length %d for its %d-byte buffer", c.Head, c.Len, size[c.Head])
			}
			if c.Len > 0 {
				filled++
			}
			all = append(all, c.Written...)
		}
		waiting, _ := rawReadable(r.tq.Fd()) // the frame waits on the queue's end
		delivered, truncated := r.c.local[cRxPackets], r.c.local[cRxTruncated]
		if delivered+truncated+b2u(waiting) != 1 {
			t.Fatalf("rx_packets %d rx_truncated %d, frame still in the TAP %v: the frame is lost or counted twice", delivered, truncated, waiting)
		}
		if delivered == 1 {
			if len(all) != len(frame)+tap.VnetHdrLen || !bytes.Equal(all[tap.VnetHdrLen:], frame) {
				t.Fatalf("guest got %d bytes over %d chains, want the %d-byte frame", len(all), len(cs), len(frame))
			}
			if nb := binary.LittleEndian.Uint16(all[10:]); int(nb) != filled {
				t.Fatalf("num_buffers %d, but the frame went into %d chains", nb, filled)
			}
		}
	})
}

func rawReadable(fd int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return n > 0, err
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
