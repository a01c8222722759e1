package virtqueue

// Dirty logging (vhost-user.rst, "Dirty logging"): while the front-end
// migrates the guest, the device marks in the front-end's log every page
// it writes, after the write: the buffers it fills and, when the front-end
// gave the ring's used-ring address for logging, the used ring.

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
		q.usedLog.Mark(q.logAddr+off, n)
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
