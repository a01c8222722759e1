package vhost

import (
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// vring is the control plane's view of one ring.
type vring struct {
	num     uint32 // 0 until SET_VRING_NUM
	addrSet bool
	va      ringVA
	base    uint32 // SET_VRING_BASE value, RingSpec.Base's layout
	kick    int    // -1: none
	call    int
	err     int
	enabled bool
	started bool
	logUsed bool   // VHOST_VRING_F_LOG
	logAddr uint64 // log_guest_addr
}

func newVring() vring { return vring{kick: -1, call: -1, err: -1} }

func (v *vring) closeFds() {
	for _, fd := range []*int{&v.kick, &v.call, &v.err} {
		closeFd(fd)
	}
}

// closeFd closes *fd, if any, and sets it to -1.
func closeFd(fd *int) {
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

// ringVA holds a ring's three parts as front-end user addresses
// (SET_VRING_ADDR).
type ringVA struct{ desc, avail, used uint64 }

// translate checks the ring of num entries at a against mem (BAD-INPUTS
// 24): each part inside one region and aligned in guest physical memory,
// with the extents and alignments virtqueue.Config defines. It returns the
// ring with guest physical addresses.
//
// For a packed ring (VIRTIO_F_RING_PACKED acked) the three addresses are
// the descriptor ring and the driver and device event areas.
//
// Preconditions: num is a valid ring size (setVringNum checked it).
func (a ringVA) translate(mem *virtqueue.Memory, num uint32, packed bool) (virtqueue.Config, error) {
	c := virtqueue.Config{Size: uint16(num), Desc: a.desc, Avail: a.avail, Used: a.used, Packed: packed}
	areas := c.Areas()
	var gpa [len(areas)]uint64
	for i, ar := range areas {
		var ok bool
		if gpa[i], ok = mem.VAToGPA(ar.Addr, ar.Bytes); !ok {
			return c, reject(ar.Name, "%#x+%d is not inside one memory region", ar.Addr, ar.Bytes)
		}
	}
	for i, ar := range areas {
		if gpa[i]%ar.Align != 0 {
			return c, reject(ar.Name, "%#x is not %d-byte aligned", gpa[i], ar.Align)
		}
	}
	c.Desc, c.Avail, c.Used = gpa[0], gpa[1], gpa[2]
	return c, nil
}

// vringIndex checks a 32-bit ring index before it is narrowed (BAD-INPUTS 10).
func (s *session) vringIndex(idx uint32) (int, error) {
	if uint64(idx) >= uint64(len(s.vrings)) {
		return 0, reject("index", "vring %d, the device has %d", idx, len(s.vrings))
	}
	return int(idx), nil
}

// vringState decodes struct vhost_vring_state and checks its index.
func (s *session) vringState(m *Msg) (i int, num uint32, err error) {
	i, err = s.vringIndex(le.Uint32(m.Payload))
	return i, le.Uint32(m.Payload[4:]), err
}

func (s *session) anyStarted() bool {
	for i := range s.vrings {
		if s.vrings[i].started {
			return true
		}
	}
	return false
}

// stop stops ring i if it runs; its base becomes the index it reached.
func (s *session) stop(i int) {
	v := &s.vrings[i]
	if v.started {
		v.base = s.dev.StopRing(i)
		v.started = false
	}
}

func (s *session) stopAll() {
	for i := range s.vrings {
		s.stop(i)
	}
}

func (s *session) setVringNum(m *Msg) ([]byte, error) {
	i, num, err := s.vringState(m)
	if err != nil {
		return nil, err
	}
	// The whole u32 is checked before it is narrowed to a ring size.
	if num > virtqueue.MaxSize || (virtqueue.Config{Size: uint16(num), Packed: s.packed()}).Validate(nil) != nil {
		if s.packed() {
			return nil, reject("num", "%d: a packed ring size is from 1 to %d", num, virtqueue.MaxSize)
		}
		return nil, reject("num", "%d: a split ring size is a power of two from 1 to %d", num, virtqueue.MaxSize)
	}
	v := &s.vrings[i]
	if v.started {
		return nil, reject("num", "vring %d is running", i)
	}
	if v.addrSet && s.mem != nil {
		// The ring areas grow with num: they must still fit.
		if _, err := v.va.translate(s.mem, num, s.packed()); err != nil {
			return nil, err
		}
	}
	v.num = num
	return nil, nil
}

func (s *session) setVringAddr(m *Msg) ([]byte, error) {
	p := m.Payload
	i, err := s.vringIndex(le.Uint32(p))
	if err != nil {
		return nil, err
	}
	flags := le.Uint32(p[4:])
	va := ringVA{desc: le.Uint64(p[8:]), used: le.Uint64(p[16:]), avail: le.Uint64(p[24:])}
	logAddr := le.Uint64(p[32:])
	lg, canLog := s.logger()
	if flags&^vringFLog != 0 || flags != 0 && !canLog {
		return nil, reject("flags", "%#x: only VHOST_VRING_F_LOG is supported, with dirty logging", flags)
	}
	if s.mem == nil {
		return nil, reject("memory", "SET_VRING_ADDR before any memory table")
	}
	v := &s.vrings[i]
	if v.num == 0 {
		return nil, reject("num", "SET_VRING_ADDR for vring %d before SET_VRING_NUM", i)
	}
	logUsed := flags&vringFLog != 0
	if v.started {
		// Migration turns used-ring logging on and off while the ring
		// runs, with the same addresses; anything else waits for a stop.
		if va != v.va || !canLog {
			return nil, reject("index", "vring %d is running: only its log flag and log address may change", i)
		}
		v.logUsed, v.logAddr = logUsed, logAddr
		lg.SetRingLog(i, logUsed, logAddr)
		return nil, nil
	}
	if _, err := va.translate(s.mem, v.num, s.packed()); err != nil {
		return nil, err
	}
	v.va, v.addrSet = va, true
	v.logUsed, v.logAddr = logUsed, logAddr
	return nil, nil
}

func (s *session) setVringBase(m *Msg) ([]byte, error) {
	i, num, err := s.vringState(m)
	if err != nil {
		return nil, err
	}
	if err := s.checkBase(i, num); err != nil {
		return nil, err
	}
	if s.vrings[i].started {
		return nil, reject("index", "vring %d is running", i)
	}
	s.vrings[i].base = num
	return nil, nil
}

// packed reports whether the driver acked VIRTIO_F_RING_PACKED.
func (s *session) packed() bool { return s.features&bit(FeatRingPacked) != 0 }

// checkBase checks a SET_VRING_BASE value for ring i: a split ring's index
// fits 16 bits; a packed ring's value is two positions (avail in the low
// half, used in the high half), each an index in bits 0-14 below the ring
// size and a wrap counter in bit 15 (BAD-INPUTS 75).
func (s *session) checkBase(i int, num uint32) error {
	if !s.packed() {
		if num > 0xffff {
			return reject("num", "base %d exceeds 65535", num)
		}
		return nil
	}
	size := s.vrings[i].num
	for _, half := range [2]uint32{num & 0xffff, num >> 16} {
		if idx := half & 0x7fff; size != 0 && idx >= size {
			return reject("num", "packed base %#x: index %d is not below the ring size %d", num, idx, size)
		}
	}
	return nil
}

// getVringBase stops the ring and answers the index of the next available
// entry not consumed. The request's num is ignored (DPDK sends a stale one).
func (s *session) getVringBase(m *Msg) ([]byte, error) {
	i, _, err := s.vringState(m)
	if err != nil {
		return nil, err
	}
	s.stop(i)
	// The ring is stopped; a new SET_VRING_KICK starts it again.
	v := &s.vrings[i]
	closeFd(&v.kick)
	b := make([]byte, vringStateSize)
	le.PutUint32(b, uint32(i))
	le.PutUint32(b[4:], v.base)
	return b, nil
}

// vringFd decodes the u64 of SET_VRING_KICK, CALL and ERR (BAD-INPUTS 8,
// 10): the ring index in bits 0-7, bit 8 set when no fd comes. It returns
// the ring and the fd, -1 for none; the fd still belongs to m until the
// caller keeps it (keepVringFd), which it does only once nothing can refuse the
// message any more.
func (s *session) vringFd(m *Msg) (i, fd int, err error) {
	u := le.Uint64(m.Payload)
	if u&^uint64(vringIndexMask|vringNoFd) != 0 {
		return 0, -1, reject("u64", "%#x has bits set beyond the index and the no-fd flag", u)
	}
	want := 1
	if u&vringNoFd != 0 {
		want = 0
	}
	if len(m.Fds) != want {
		return 0, -1, reject("fds", "%d fds attached, want %d (no-fd bit %v)", len(m.Fds), want, want == 0)
	}
	if i, err = s.vringIndex(uint32(u & vringIndexMask)); err != nil {
		return 0, -1, err
	}
	fd = -1
	if want == 1 {
		fd = m.Fds[0]
	}
	return i, fd, nil
}

// keepVringFd keeps fd, the one vringFd returned: m no longer closes it.
func keepVringFd(m *Msg, fd int) {
	if fd >= 0 {
		m.takeFd(0)
	}
}

// setVringKick replaces the kick fd and starts the ring. Replacing the kick
// of a running ring restarts it at the index it reached (BAD-INPUTS 9: the
// old fd is closed). The kick must be an eventfd (BAD-INPUTS 56, 57).
func (s *session) setVringKick(m *Msg) ([]byte, error) {
	i, fd, err := s.vringFd(m)
	if err == nil {
		err = s.checkStartable(i)
	}
	if err == nil {
		err = checkKickFd(i, fd)
	}
	if err != nil {
		return nil, err
	}
	keepVringFd(m, fd)
	s.stop(i)
	v := &s.vrings[i]
	closeFd(&v.kick)
	v.kick = fd
	if err := s.start(i); err != nil {
		// The device refused: the message is rejected, so the fd it
		// brought is closed rather than kept for a ring that never ran.
		closeFd(&v.kick)
		return nil, err
	}
	return nil, nil
}

func (s *session) setVringCall(m *Msg) ([]byte, error) {
	return nil, s.replaceFd(m, "call", func(v *vring) *int { return &v.call }, s.dev.SetCallFd)
}

func (s *session) setVringErr(m *Msg) ([]byte, error) {
	return nil, s.replaceFd(m, "err", func(v *vring) *int { return &v.err }, s.dev.SetErrFd)
}

// replaceFd sets a ring's call or err fd (slot picks which, named which).
// The new fd, an eventfd or none (BAD-INPUTS 56), is handed to a running
// ring's device first (apply), and the old one closed once the device has
// switched over (BAD-INPUTS 9).
func (s *session) replaceFd(m *Msg, which string, slot func(*vring) *int, apply func(index, fd int)) error {
	i, fd, err := s.vringFd(m)
	if err == nil {
		err = checkVringFd(i, which, fd)
	}
	if err != nil {
		return err
	}
	keepVringFd(m, fd)
	v := &s.vrings[i]
	p := slot(v)
	old := *p
	*p = fd
	if v.started {
		apply(i, fd)
	}
	closeFd(&old)
	return nil
}

// checkStartable reports why ring i cannot start yet (BAD-INPUTS 11).
func (s *session) checkStartable(i int) error {
	v := &s.vrings[i]
	switch {
	case s.mem == nil:
		return reject("memory", "SET_VRING_KICK for vring %d before any memory table", i)
	case v.num == 0:
		return reject("num", "SET_VRING_KICK for vring %d before SET_VRING_NUM", i)
	case !v.addrSet:
		return reject("addr", "SET_VRING_KICK for vring %d before SET_VRING_ADDR", i)
	case !s.featuresSet:
		return reject("features", "SET_VRING_KICK for vring %d before SET_FEATURES", i)
	}
	if err := s.checkBase(i, v.base); err != nil {
		return err
	}
	_, err := v.va.translate(s.mem, v.num, s.packed())
	return err
}

func (s *session) start(i int) error {
	v := &s.vrings[i]
	c, err := v.va.translate(s.mem, v.num, s.packed())
	if err != nil {
		return err
	}
	enabled := v.enabled
	if s.features&bit(FeatProtocolFeatures) == 0 {
		// vhost-user.rst "Ring states": without protocol features a ring
		// starts enabled.
		enabled = true
	}
	spec := RingSpec{
		Index: i, Size: c.Size, Desc: c.Desc, Avail: c.Avail, Used: c.Used, Base: v.base,
		EventIdx: s.features&bit(FeatRingEventIdx) != 0,
		Indirect: s.features&bit(FeatRingIndirectDesc) != 0,
		Packed:   s.packed(),
		Kick:     v.kick, Call: v.call, Err: v.err, Enabled: enabled,
		LogUsed: v.logUsed, LogAddr: v.logAddr,
	}
	if err := s.dev.StartRing(spec); err != nil {
		return reject("vring", "device refused to start vring %d: %v", i, err)
	}
	v.started = true
	v.enabled = enabled
	return nil
}

func (s *session) setVringEnable(m *Msg) ([]byte, error) {
	if !s.protoSet {
		return nil, reject("protocol_features", "SET_VRING_ENABLE before SET_PROTOCOL_FEATURES")
	}
	i, num, err := s.vringState(m)
	if err != nil {
		return nil, err
	}
	if num > 1 {
		return nil, reject("num", "%d: enable is 0 or 1", num)
	}
	v := &s.vrings[i]
	v.enabled = num == 1
	if v.started {
		s.dev.EnableRing(i, v.enabled)
	}
	return nil, nil
}
