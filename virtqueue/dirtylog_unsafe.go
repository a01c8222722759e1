package virtqueue

import "unsafe"

// GPAOf returns the guest-physical address of b's first byte, when b lies
// wholly inside one region of m (the slices Slice, Contiguous and the
// chains hand out do).
func (m *Memory) GPAOf(b []byte) (uint64, bool) {
	if m == nil || len(b) == 0 {
		return 0, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for _, r := range m.regions {
		o, ok := hostOffset(r.data, p)
		if !ok {
			continue
		}
		off := uint64(o)
		if uint64(len(b)) > r.Size-off {
			return 0, false
		}
		return r.GPA + off, true
	}
	return 0, false
}
