package virtqueue

// queueMem is what a queue of either layout keeps of the memory it shares
// with the guest and the front-end: the ring's configuration, the memory
// table and the ring parts translated through it, the error that broke the
// queue, and the dirty log. Queue (split) and PackedQueue embed it.
type queueMem struct {
	cfg    Config
	mem    *Memory
	r      rings
	broken error // non-nil once the guest broke the queue
	// log, when not nil, is the dirty log the device marks its writes in
	// (queuelog.go); usedLog is log too when the front-end asked for the
	// ring's own writes to be logged, at logAddr, the guest-physical
	// address it gave (SET_VRING_ADDR, VHOST_VRING_F_LOG): the used ring's
	// for a split ring, the descriptor ring's for a packed one (DPDK logs
	// packed rings the same way; the device area is marked at Config.Used).
	log, usedLog *DirtyLog
	logAddr      uint64
}

// Config returns the configuration the queue was built with.
func (q *queueMem) Config() Config { return q.cfg }

// SetMemory switches the queue to a new memory table (SET_MEM_TABLE,
// ADD_MEM_REG, REM_MEM_REG; BAD-INPUTS 20) and recomputes the cached ring
// slices. If the ring no longer translates, the queue drops every
// reference to guest memory, breaks with ErrRingUnmapped, and SetMemory
// returns an error matching it: from then on no method touches memory.
// Precondition: the worker is at a quiescent point (no chain popped from
// the old table is still being filled).
func (q *queueMem) SetMemory(mem *Memory) error {
	r, err := q.cfg.translate(mem)
	if err != nil {
		q.mem, q.r = nil, rings{}
		q.broken = ErrRingUnmapped
		return &setMemoryError{err}
	}
	q.mem, q.r = mem, r
	return nil
}

// SetLog makes the queue mark its writes in log (nil: stop). With usedOn
// the ring's own writes are marked too, at ringGPA (log_guest_addr). Like
// SetMemory, only with the worker at a quiescent point.
func (q *queueMem) SetLog(log *DirtyLog, usedOn bool, ringGPA uint64) {
	q.log, q.usedLog, q.logAddr = log, nil, ringGPA
	if usedOn {
		q.usedLog = log
	}
}

// Logging reports whether the queue has a dirty log to mark.
func (q *queueMem) Logging() bool { return q.log != nil }

// MarkWritten marks the pages of the first n bytes of bufs, the device-
// writable buffers of a chain popped from this queue, in the dirty log.
// Call it after the bytes are stored and before the chain is pushed.
func (q *queueMem) MarkWritten(bufs [][]byte, n uint32) { markWritten(q.log, q.mem, bufs, n) }
