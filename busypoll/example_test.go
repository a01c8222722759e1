package busypoll_test

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vhostd/vhostd/busypoll"
)

// counterPoller is work that arrives without an fd: another goroutine adds to pending
// and calls Worker.Wake.
type counterPoller struct {
	pending atomic.Int64
	done    atomic.Int64
}

func (c *counterPoller) Poll(budget int) int {
	n := min(c.pending.Load(), int64(budget))
	c.pending.Add(-n)
	c.done.Add(n)
	return int(n)
}
func (c *counterPoller) Arm() bool  { return c.pending.Load() != 0 }
func (c *counterPoller) Disarm()    {}
func (c *counterPoller) Fds() []int { return nil }

func Example() {
	c := &counterPoller{}
	w, err := busypoll.Start(busypoll.Config{SpinBudget: 50 * time.Microsecond}, c)
	if err != nil {
		panic(err)
	}
	defer w.Stop()

	c.pending.Add(100)
	w.Wake() // in case the worker is asleep
	for c.done.Load() < 100 {
		time.Sleep(time.Millisecond)
	}

	w.Pause() // safe point: no Poll running until Resume
	fmt.Println("done", c.done.Load())
	w.Resume()
	// Output: done 100
}
