package tap

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"time"

	"github.com/vhostd/vhostd/internal/rawio"
	"golang.org/x/sys/unix"
)

// Calibration is what Calibrate measured: the best time per frame of each write mode, over
// alternating rounds on one private TAP.
type Calibration struct {
	WriteNs float64 // one write(2) per frame
	UringNs float64 // one io_uring_enter per batch of CalibrationBatch frames
	Rounds  int     // rounds of each mode
}

// CalibrationBatch is the batch Calibrate writes per call: a worker's TX budget.
const CalibrationBatch = 64

// Calibrate measures, for about budget, how long a frame takes to reach a TAP with write(2)
// and through an io_uring (WriteRing), on this machine and kernel, so that the faster can be
// chosen at start-up (perf/FINDINGS.md: io_uring won on one CPU type and not on another).
// It creates a private TAP named vhcal plus a random suffix, with two queues (one per mode),
// writes 64-byte frames that the host drops (a locally administered destination that is not
// the TAP's address, an unassigned EtherType), and deletes the TAP. Rounds alternate between
// the modes, so that load from other processes falls on both; each mode keeps its best round.
// It needs CAP_NET_ADMIN and io_uring: without either it fails, and the caller keeps write(2).
func Calibrate(budget time.Duration) (Calibration, error) {
	var c Calibration
	sfx := make([]byte, 4)
	rand.Read(sfx)
	d, err := OpenTAP(Config{Name: "vhcal" + hex.EncodeToString(sfx), Queues: 2})
	if err != nil {
		return c, fmt.Errorf("tap: calibrate: %w", err)
	}
	defer d.Close()
	if err := d.SetUp(true); err != nil {
		return c, fmt.Errorf("tap: calibrate: bring %s up: %w", d.Name(), err)
	}
	if err := d.Queue(1).UseWriteRing(CalibrationBatch); err != nil {
		return c, fmt.Errorf("tap: calibrate: %w", err)
	}
	frame := make([]byte, VnetHdrLen+64)
	copy(frame[VnetHdrLen:], []byte{0x02, 0x76, 0x68, 0x63, 0x61, 0x6c, 0x02, 0x76, 0x68, 0x63, 0x61, 0x6d, 0x88, 0xb5})
	frames := make([][]unix.Iovec, CalibrationBatch)
	for i := range frames {
		frames[i] = []unix.Iovec{rawio.Iovec(frame)}
	}
	errs := make([]unix.Errno, CalibrationBatch)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const perRound = 8 // batches
	best := [2]time.Duration{1 << 62, 1 << 62}
	for end := time.Now().Add(budget); c.Rounds < 2 || time.Now().Before(end); c.Rounds++ {
		for m := range best {
			q := d.Queue(m)
			start := time.Now()
			for b := 0; b < perRound; b++ {
				if ok := q.WriteFrames(frames, errs); ok != len(frames) {
					return c, fmt.Errorf("tap: calibrate: %v wrote %d of %d frames: %v", q.WriteMode(), ok, len(frames), firstErr(errs))
				}
			}
			best[m] = min(best[m], time.Since(start))
		}
	}
	per := float64(perRound * CalibrationBatch)
	c.WriteNs, c.UringNs = float64(best[0].Nanoseconds())/per, float64(best[1].Nanoseconds())/per
	return c, nil
}

func firstErr(errs []unix.Errno) unix.Errno {
	for _, e := range errs {
		if e != 0 {
			return e
		}
	}
	return 0
}
