package virtqueue

import "unsafe"

// HostContains reports whether addr, a host virtual address (where a
// memory fault hit, for instance), lies in the guest memory or the dirty
// log the queue uses: the device tells a fault in front-end memory, which
// breaks a ring, from one of its own, which must not be survived.
func (q *queueMem) HostContains(addr uintptr) bool {
	return q.mem.hostContains(addr) || q.log.hostContains(addr) || q.usedLog.hostContains(addr)
}

func (m *Memory) hostContains(addr uintptr) bool {
	if m == nil {
		return false
	}
	for _, r := range m.regions {
		if _, ok := hostOffset(r.data, addr); ok {
			return true
		}
	}
	return false
}

func (l *DirtyLog) hostContains(addr uintptr) bool {
	if l == nil {
		return false
	}
	_, ok := hostOffset(l.bits, addr)
	return ok
}

// hostOffset returns addr's offset in b, if addr lies in b.
func hostOffset(b []byte, addr uintptr) (uintptr, bool) {
	if len(b) == 0 {
		return 0, false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if addr < start || addr-start >= uintptr(len(b)) {
		return 0, false
	}
	return addr - start, true
}
