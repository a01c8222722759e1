package virtqueue

// Rewind hands back the n chains popped most recently, across any number of
// PopBatch calls, so that they are popped again later; the device uses it
// when buffers it took but never filled must be dropped, for instance
// because they were translated through a memory table that is going away.
//
// Precondition: none of those n chains has been pushed, and no chain popped
// before them is still unpushed behind them in a way the caller cannot
// complete first (a device that completes in pop order satisfies this by
// rewinding exactly the chains it has not used yet). Rewind never touches
// guest memory.
func (q *Queue) Rewind(n int) {
	if n <= 0 {
		return
	}
	q.lastAvail -= uint16(n)
	q.lastPopped = 0
}
