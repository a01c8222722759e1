package virtqueue

// Dirty logging (vhost-user.rst, "Dirty logging"): while the front-end
// migrates the guest, the device marks in the front-end's log every page
// it writes, after the write: the buffers it fills and, when the front-end
// gave the ring's used-ring address for logging, the used ring.

// SetLog makes the queue mark its writes in log (nil: stop). With
// usedOn the used ring's writes are marked too, the used ring being at
// usedGPA (log_guest_addr). Like SetMemory, only with the worker at a
// quiescent point.
func (q *Queue) SetLog(log *DirtyLog, usedOn bool, usedGPA uint64) {
	q.log, q.usedLog, q.logUsed = log, nil, usedGPA
	if usedOn {
		q.usedLog = log
	}
}

// Logging reports whether the queue has a dirty log to mark.
func (q *Queue) Logging() bool { return q.log != nil }

// MarkWritten marks the pages of the first n bytes of bufs, the device-
// writable buffers of a chain popped from this queue, in the dirty log.
// Call it after the bytes are stored and before the chain is pushed.
func (q *Queue) MarkWritten(bufs [][]byte, n uint32) { markWritten(q.log, q.mem, bufs, n) }

// markWritten marks the pages of the first n bytes of bufs, guest memory
// of mem, in log (nil: nothing).
func markWritten(log *DirtyLog, mem *Memory, bufs [][]byte, n uint32) {
	if log == nil {
		return
	}
	for _, b := range bufs {
		if n == 0 {
			return
		}
		k := min(uint32(len(b)), n)
		log.MarkBytes(mem, b[:k])
		n -= k
	}
}

// logUsedBytes marks n bytes at offset off of the used ring.
func (q *Queue) logUsedBytes(off, n uint64) {
	if q.usedLog != nil {
		q.usedLog.Mark(q.logUsed+off, n)
	}
}

// logUsedElems marks n used elements from index from on (a batch may wrap
// around the ring); publishUsed marks the flags and index.
func (q *Queue) logUsedElems(from, n uint16) {
	size := uint64(q.cfg.Size)
	count := min(uint64(n), size)
	start := uint64(from & q.mask)
	if start+count <= size {
		q.logUsedBytes(4+usedElemSize*start, usedElemSize*count)
		return
	}
	head := size - start
	q.logUsedBytes(4+usedElemSize*start, usedElemSize*head)
	q.logUsedBytes(4, usedElemSize*(count-head))
}
