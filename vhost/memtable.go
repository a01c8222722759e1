package vhost

import (
	"fmt"

	"github.com/vhostd/vhostd/virtqueue"
)

// The memory table: SET_MEM_TABLE replaces it, ADD_MEM_REG and REM_MEM_REG
// change it a region at a time (BAD-INPUTS section B). Each change builds a
// whole new virtqueue.Memory, checks that every running ring still
// translates to the same guest physical addresses in it, publishes it to
// the device and only then releases what the old table alone held.

// regionSpec decodes one 32-byte memory region description.
func regionSpec(b []byte) virtqueue.RegionSpec {
	return virtqueue.RegionSpec{GPA: le.Uint64(b), Size: le.Uint64(b[8:]), UserAddr: le.Uint64(b[16:]), MmapOffset: le.Uint64(b[24:])}
}

// checkRings makes sure every started ring still translates in mem
// (BAD-INPUTS 20).
func (s *session) checkRings(mem *virtqueue.Memory) error {
	for i := range s.vrings {
		v := &s.vrings[i]
		if !v.started {
			continue
		}
		now, err := v.va.translate(mem, v.num, s.packed())
		if err != nil {
			return reject("regions", "running vring %d would not translate: %v", i, err)
		}
		// The device runs the ring at the guest physical addresses it was
		// started with: the new table must map the ring's user addresses to
		// the same ones, or the running ring would read the wrong memory.
		was, err := v.va.translate(s.mem, v.num, s.packed())
		if err != nil || now != was {
			return reject("regions", "running vring %d would move in guest physical memory", i)
		}
	}
	return nil
}

// swapMemory publishes mem to the device and returns the table it replaced.
func (s *session) swapMemory(mem *virtqueue.Memory) *virtqueue.Memory {
	old := s.mem
	s.dev.SetMemory(mem)
	s.mem = mem
	return old
}

func closeRegions(regions []*virtqueue.Region) {
	for _, r := range regions {
		r.Close()
	}
}

// setMemTable replaces the table (BAD-INPUTS 14-18, 20, 21, 58). The table
// checked the payload holds the 8-byte header; the region count, the exact
// size and one fd per region are checked here, in that order.
func (s *session) setMemTable(m *Msg) ([]byte, error) {
	p := m.Payload
	n := le.Uint32(p)
	if n == 0 || n > MaxRegions {
		return nil, reject("nregions", "%d, want 1..%d", n, MaxRegions)
	}
	if want := memTableHdrSize + regionSize*int(n); len(p) != want {
		return nil, reject("size", "%d bytes, want exactly %d for %d regions", len(p), want, n)
	}
	if len(m.Fds) != int(n) {
		return nil, reject("fds", "%d fds attached, want one for each of %d regions", len(m.Fds), n)
	}
	specs := make([]virtqueue.RegionSpec, n)
	for i := range specs {
		specs[i] = regionSpec(p[memTableHdrSize+regionSize*i:])
		field := fmt.Sprintf("regions[%d]", i)
		if err := specs[i].Validate(); err != nil {
			return nil, reject(field, "%v", err)
		}
		if err := s.checkRegionFd(field, m.Fds[i]); err != nil {
			return nil, err
		}
	}
	regions := make([]*virtqueue.Region, 0, n)
	for i := range specs {
		r, err := virtqueue.MapRegion(m.takeFd(i), specs[i])
		if err != nil {
			closeRegions(regions)
			return nil, reject(fmt.Sprintf("regions[%d]", i), "%v", err)
		}
		regions = append(regions, r)
	}
	mem, err := virtqueue.NewMemory(regions)
	if err != nil {
		closeRegions(regions)
		return nil, reject("regions", "%v", err)
	}
	if err := s.checkRings(mem); err != nil {
		closeRegions(regions)
		return nil, err
	}
	s.swapMemory(mem).Close()
	return nil, nil
}

func (s *session) addMemReg(m *Msg) ([]byte, error) {
	if s.mem.Len() >= MaxMemSlots {
		return nil, reject("regions", "already %d regions, the advertised maximum", s.mem.Len())
	}
	spec := regionSpec(m.Payload[8:])
	if err := spec.Validate(); err != nil {
		return nil, reject("region", "%v", err)
	}
	if err := s.checkRegionFd("region", m.Fds[0]); err != nil {
		return nil, err
	}
	r, err := virtqueue.MapRegion(m.takeFd(0), spec)
	if err != nil {
		return nil, reject("region", "%v", err)
	}
	mem, err := virtqueue.NewMemory(append(append([]*virtqueue.Region(nil), s.mem.Regions()...), r))
	if err != nil {
		r.Close()
		return nil, reject("region", "%v", err)
	}
	s.swapMemory(mem) // the old table's regions live on in the new one
	return nil, nil
}

// remMemReg removes one region. vhost-user.rst: no fd should come, but one
// is tolerated (the table allows it) and closed.
func (s *session) remMemReg(m *Msg) ([]byte, error) {
	spec := regionSpec(m.Payload[8:])
	var victim *virtqueue.Region
	var keep []*virtqueue.Region
	for _, r := range s.mem.Regions() {
		if victim == nil && r.GPA == spec.GPA && r.Size == spec.Size && r.UserAddr == spec.UserAddr {
			victim = r
			continue
		}
		keep = append(keep, r)
	}
	if victim == nil {
		return nil, reject("region", "no region at gpa %#x size %#x uaddr %#x", spec.GPA, spec.Size, spec.UserAddr)
	}
	var mem *virtqueue.Memory
	if len(keep) > 0 {
		var err error
		if mem, err = virtqueue.NewMemory(keep); err != nil {
			return nil, reject("region", "%v", err)
		}
		if err := s.checkRings(mem); err != nil {
			return nil, err
		}
	} else if s.anyStarted() {
		return nil, reject("region", "the last region is in use by running rings")
	}
	s.swapMemory(mem)
	victim.Close()
	return nil, nil
}
