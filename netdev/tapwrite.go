package netdev

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/tap"
	"golang.org/x/sys/unix"
)

// TAPWrite is how guest TX frames are handed to the TAP (--tap-write).
type TAPWrite uint8

const (
	// TAPWriteSyscall is one write(2) or writev(2) per frame.
	TAPWriteSyscall TAPWrite = iota
	// TAPWriteUring is one io_uring_enter per batch, the TAP queue's fd
	// registered as a fixed file (tap.WriteRing).
	TAPWriteUring
	// TAPWriteAuto chooses at Open from a short calibration on a private
	// TAP (tap.Calibrate), or write(2) when it cannot run.
	TAPWriteAuto
)

func (w TAPWrite) String() string {
	return [...]string{"write", "uring", "auto"}[w]
}

// ParseTAPWrite parses --tap-write.
func ParseTAPWrite(s string) (TAPWrite, error) {
	for w := TAPWriteSyscall; w <= TAPWriteAuto; w++ {
		if s == w.String() {
			return w, nil
		}
	}
	return 0, fmt.Errorf("--tap-write %q: want auto, write or uring", s)
}

// TAPWriteChoice is the TAP write mode in use and why (Status, /status).
type TAPWriteChoice struct {
	Mode string `json:"mode"` // write or uring
	// By is "config" (asked for), "calibration", or why calibration
	// could not run (write(2) then).
	By string `json:"chosen_by"`
	// WriteNs and UringNs are the calibration's best ns per frame; zero
	// when none ran.
	WriteNs float64 `json:"write_ns_per_frame,omitempty"`
	UringNs float64 `json:"uring_ns_per_frame,omitempty"`
}

// Calibration settings: how long, and how much faster io_uring must be
// for auto to take it (a tie keeps the simpler write(2)).
const (
	calibrationTime = 20 * time.Millisecond
	uringMargin     = 0.97
)

// calibrate is tap.Calibrate; tests replace it.
var calibrate = tap.Calibrate

// chooseTAPWrite resolves cfg.TAPWrite: auto calibrates (needs
// CAP_NET_ADMIN and io_uring; run before the sandbox drops them). It logs
// the choice once.
func chooseTAPWrite(w TAPWrite, log hclog.Logger) (TAPWrite, TAPWriteChoice) {
	if w != TAPWriteAuto {
		return w, TAPWriteChoice{Mode: w.String(), By: "config"}
	}
	c, err := calibrate(calibrationTime)
	if err != nil {
		log.Info("TAP write mode: write (calibration could not run)", "error", err)
		return TAPWriteSyscall, TAPWriteChoice{Mode: "write", By: "calibration failed: " + err.Error()}
	}
	got := TAPWriteSyscall
	if c.UringNs < uringMargin*c.WriteNs {
		got = TAPWriteUring
	}
	log.Info("TAP write mode chosen by calibration", "mode", got.String(),
		"write_ns_per_frame", int(c.WriteNs), "uring_ns_per_frame", int(c.UringNs), "rounds", c.Rounds)
	return got, TAPWriteChoice{Mode: got.String(), By: "calibration", WriteNs: c.WriteNs, UringNs: c.UringNs}
}

// useTAPWrite sets the write mode on the first n queues of h (Open, and
// a reattached interface). Auto, unresolved, is write(2).
func useTAPWrite(h hostIf, n int, w TAPWrite) error {
	if w != TAPWriteUring {
		return nil
	}
	for i := 0; i < n; i++ {
		if err := h.Queue(i).UseWriteRing(slotCount); err != nil {
			return fmt.Errorf("--tap-write uring, queue %d of %s: %w", i, h.Name(), err)
		}
	}
	return nil
}

// writeFrames writes t.frames to q in one call of q's mode and counts each
// frame by its own result: the one completion mapping of both modes. It
// reports whether the TAP is gone. Zero-copy frames point into guest
// memory: WriteFrames returns only once every frame has its result (with
// io_uring, its completion), and only then does toTAP hand the chains on
// to be returned to the guest.
func (t *txPath) writeFrames(q *tap.Queue, c *counters) (gone bool) {
	errs := t.errs[:len(t.frames)]
	q.WriteFrames(t.frames, errs)
	for j, e := range errs {
		switch {
		case e == 0:
			c.add(cTxPackets, 1)
			c.add(cTxBytes, uint64(t.batch[t.frameOf[j]].bytes))
		case e == unix.EAGAIN:
			// Policy (BAD-INPUTS 52): drop. tun hands frames to the stack
			// and never says EAGAIN on write; macvtap can when its socket
			// buffer is full. Back-pressure would hold the guest's chains
			// and stall its TX queue behind a slow host.
			t.dropWrite(j, cTxDroppedTapFull, causeNone, c)
		case tap.IsDown(e):
			// The link is down: drop, but keep the queue, which carries
			// traffic again once the link is up.
			t.dropWrite(j, cTxDroppedTap, causeTapDown, c)
		case tap.IsGone(e):
			gone = true
			t.dropWrite(j, cTxDroppedTap, causeTapGone, c)
		default:
			// The kernel refused this one frame (a header it did not
			// like): drop it.
			t.dropWrite(j, cTxDroppedTap, causeRefused, c)
		}
	}
	return gone
}

// TAPWrite reports the TAP write mode in use and how it was chosen.
func (d *Device) TAPWrite() TAPWriteChoice { return d.tw }
