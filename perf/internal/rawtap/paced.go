package rawtap

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// NoFIFO starts the warning PacedLoop prints when it cannot have
// SCHED_FIFO.
const NoFIFO = "paced source without SCHED_FIFO"

// PacedLoop is the guest-RX source for a front-end that spins on the same
// CPU (testpmd's rxonly): it sends batches of batch frames on a
// SCHED_FIFO thread and after each batch sleeps for as long as the batch
// took, times (1-duty)/duty. The scheduler hands the CPU to the spinning
// front-end while the source sleeps and back to the source the moment its
// sleep ends, so the two alternate every few microseconds, as the Go
// guest and its built-in source do, instead of every scheduler time slice
// (milliseconds: long enough for the TAP's queue and the guest's ring to
// overflow while the other one waits).
func (in *Injector) PacedLoop(buf []byte, batch int, duty float64, stop *atomic.Bool, n *Counters) error {
	if duty <= 0 || duty > 1 || batch <= 0 {
		return fmt.Errorf("paced source: duty %v (want 0 < duty <= 1), batch %d", duty, batch)
	}
	runtime.LockOSThread()
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1}, 0); err != nil {
		// Without CAP_SYS_NICE: paced all the same, but the scheduler
		// may let the front-end run on past the end of a sleep.
		fmt.Fprintf(os.Stderr, "%s: %v\n", NoFIFO, err)
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	}
	var fr, er uint64
	for !stop.Load() {
		t0 := time.Now()
		ok := in.Send(buf, batch)
		fr, er = fr+uint64(ok), er+uint64(batch-ok)
		n.publish(fr, 0, er)
		ts := unix.NsecToTimespec(int64(float64(time.Since(t0)) * (1 - duty) / duty))
		unix.Nanosleep(&ts, nil)
	}
	return nil
}
