package vhost

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/virtqueue"
	"golang.org/x/sys/unix"
)

// rejectError refuses one message (BAD-INPUTS "REJECT-MSG"): the session
// keeps running, nothing was changed.
type rejectError struct {
	field  string
	reason string
}

func (e *rejectError) Error() string { return e.field + ": " + e.reason }

func reject(field, format string, args ...any) error {
	return &rejectError{field: field, reason: fmt.Sprintf(format, args...)}
}

// errClose asks the session to close the connection after a message.
type closeError struct{ reason string }

func (e *closeError) Error() string { return e.reason }

// vring is the control plane's view of one ring.
type vring struct {
	num     uint32 // 0 until SET_VRING_NUM
	addrSet bool
	descVA  uint64
	availVA uint64
	usedVA  uint64
	base    uint16
	kick    int // -1: none
	kickSet bool
	call    int
	err     int
	enabled bool
	started bool
}

func (v *vring) closeFds() {
	for _, fd := range []*int{&v.kick, &v.call, &v.err} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	v.kickSet = false
}

// session is the protocol state of one front-end connection.
type session struct {
	log  hclog.Logger
	dev  Device
	conn *msgConn
	lim  *rateLimiter

	owner       bool
	gotFeatures bool   // GET_FEATURES answered: the front-end has seen bit 30
	features    uint64 // acked virtio features (SET_FEATURES)
	featuresSet bool
	protoSet    bool
	proto       uint64 // acked protocol features
	status      uint8
	mem         *virtqueue.Memory
	vrings      []vring
}

func newSession(log hclog.Logger, dev Device, conn *msgConn) *session {
	s := &session{log: log, dev: dev, conn: conn, lim: newRateLimiter(10)}
	s.vrings = make([]vring, dev.NumVrings())
	for i := range s.vrings {
		s.vrings[i] = vring{kick: -1, call: -1, err: -1}
	}
	return s
}

func (s *session) offeredFeatures() uint64 {
	return s.dev.Features() | bit(FeatProtocolFeatures)
}

func (s *session) offeredProto() uint64 {
	return baseProtocolFeatures | s.dev.ProtocolFeatures()
}

func (s *session) protoAcked(b uint) bool { return s.protoSet && s.proto&bit(b) != 0 }

// hasReply lists the requests whose reply is part of the request itself.
func hasReply(r Request) bool {
	switch r {
	case ReqGetFeatures, ReqGetProtocolFeatures, ReqGetVringBase, ReqGetQueueNum,
		ReqGetConfig, ReqGetMaxMemSlots, ReqGetStatus, ReqIOTLBMsg, ReqPostcopyAdvise,
		ReqPostcopyEnd, ReqGetInflightFd, ReqCreateCryptoSession, ReqGetSharedObject,
		ReqSetDeviceStateFd, ReqCheckDeviceState:
		return true
	}
	return false
}

// handle processes one message. It returns a non-nil error when the
// connection must be closed. Every fd the message carried is kept by a
// handler or closed here.
func (s *session) handle(m *Msg) error {
	defer m.closeFds()
	reply, err := s.dispatch(m)
	var rej *rejectError
	var cl *closeError
	switch {
	case err == nil:
		if reply != nil {
			return s.conn.reply(m.Req, reply)
		}
		if m.needReply() {
			return s.conn.replyU64(m.Req, 0)
		}
		return nil
	case errors.As(err, &rej):
		s.lim.log(s.log, "rejected message", "request", m.Req.String(), "field", rej.field, "reason", rej.reason)
		m.closeFds()
		switch {
		case m.Req == ReqGetConfig:
			// vhost-user.rst: an empty payload tells the front-end GET_CONFIG failed.
			return s.conn.reply(m.Req, nil)
		case m.Req == ReqIOTLBMsg:
			return s.conn.replyU64(m.Req, 1)
		case hasReply(m.Req):
			// No well-formed failure answer exists: the front-end would wait
			// for ever, so end the connection instead.
			return &closeError{reason: fmt.Sprintf("%v rejected and it has no failure reply", m.Req)}
		case m.needReply():
			return s.conn.replyU64(m.Req, 1)
		}
		return nil
	case errors.As(err, &cl):
		s.lim.log(s.log, "closing connection", "request", m.Req.String(), "reason", cl.reason)
		return err
	default:
		return err
	}
}

// payloadSize checks the exact payload size of a request (BAD-INPUTS 3).
func payloadSize(m *Msg, want int) error {
	if len(m.Payload) != want {
		return reject("size", "%d bytes, want exactly %d", len(m.Payload), want)
	}
	return nil
}

// fdCount checks the number of fds that came with a message (BAD-INPUTS 6,
// 7, 8, 15).
func fdCount(m *Msg, want int) error {
	if m.Truncated {
		return reject("fds", "more than %d fds sent (control message truncated)", 2*maxFds)
	}
	if len(m.Fds) != want {
		return reject("fds", "%d fds attached, want %d", len(m.Fds), want)
	}
	return nil
}

// fixed checks a request with a fixed payload size and fd count.
func fixed(m *Msg, size, fds int) error {
	if err := fdCount(m, fds); err != nil {
		return err
	}
	return payloadSize(m, size)
}

// vringIndex checks a 32-bit ring index before it is narrowed (BAD-INPUTS 10).
func (s *session) vringIndex(idx uint32) (int, error) {
	if uint64(idx) >= uint64(len(s.vrings)) {
		return 0, reject("index", "vring %d, the device has %d", idx, len(s.vrings))
	}
	return int(idx), nil
}

func (s *session) dispatch(m *Msg) ([]byte, error) {
	p := m.Payload
	switch m.Req {
	case ReqGetFeatures:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		s.gotFeatures = true
		return u64Bytes(s.offeredFeatures()), nil

	case ReqSetFeatures:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		return nil, s.setFeatures(le.Uint64(p))

	case ReqGetProtocolFeatures:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		if !s.gotFeatures {
			return nil, reject("features", "GET_PROTOCOL_FEATURES before GET_FEATURES offered VHOST_USER_F_PROTOCOL_FEATURES")
		}
		return u64Bytes(s.offeredProto()), nil

	case ReqSetProtocolFeatures:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		return nil, s.setProtocolFeatures(le.Uint64(p))

	case ReqSetOwner:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		// Idempotent: some front-ends send it once per queue pair.
		s.owner = true
		return nil, nil

	case ReqResetOwner:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		s.reset()
		return nil, nil

	case ReqResetDevice:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoResetDevice) {
			return nil, reject("protocol_features", "RESET_DEVICE without VHOST_USER_PROTOCOL_F_RESET_DEVICE")
		}
		s.reset()
		return nil, nil

	case ReqGetQueueNum:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoMQ) {
			return nil, reject("protocol_features", "GET_QUEUE_NUM without VHOST_USER_PROTOCOL_F_MQ")
		}
		return u64Bytes(s.dev.QueueNum()), nil

	case ReqGetMaxMemSlots:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoConfigureMemSlots) {
			return nil, reject("protocol_features", "GET_MAX_MEM_SLOTS without VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS")
		}
		return u64Bytes(MaxMemSlots), nil

	case ReqSetMemTable:
		return nil, s.setMemTable(m)
	case ReqAddMemReg:
		return nil, s.addMemReg(m)
	case ReqRemMemReg:
		return nil, s.remMemReg(m)

	case ReqSetVringNum:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		return nil, s.setVringNum(le.Uint32(p), le.Uint32(p[4:]))
	case ReqSetVringAddr:
		if err := fixed(m, vringAddrSize, 0); err != nil {
			return nil, err
		}
		return nil, s.setVringAddr(p)
	case ReqSetVringBase:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		return nil, s.setVringBase(le.Uint32(p), le.Uint32(p[4:]))
	case ReqGetVringBase:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		return s.getVringBase(le.Uint32(p))
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		return nil, s.setVringFd(m)
	case ReqSetVringEnable:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		return nil, s.setVringEnable(le.Uint32(p), le.Uint32(p[4:]))

	case ReqGetConfig, ReqSetConfig:
		return s.config(m)

	case ReqNetSetMTU:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoNetMTU) {
			return nil, reject("protocol_features", "NET_SET_MTU without VHOST_USER_PROTOCOL_F_NET_MTU")
		}
		mtu := le.Uint64(p)
		// virtio 1.x 5.1.4.1: the MTU is at least 68 and fits in 16 bits.
		if mtu < 68 || mtu > 65535 {
			return nil, reject("mtu", "%d outside 68..65535", mtu)
		}
		if err := s.dev.SetMTU(uint16(mtu)); err != nil {
			return nil, reject("mtu", "%v", err)
		}
		return nil, nil

	case ReqSendRARP:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoRARP) {
			return nil, reject("protocol_features", "SEND_RARP without VHOST_USER_PROTOCOL_F_RARP")
		}
		var mac [6]byte
		copy(mac[:], p)
		if err := s.dev.SendRARP(mac); err != nil {
			return nil, reject("mac", "%v", err)
		}
		return nil, nil

	case ReqSetStatus:
		if err := fixed(m, 8, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoStatus) {
			return nil, reject("protocol_features", "SET_STATUS without VHOST_USER_PROTOCOL_F_STATUS")
		}
		st := le.Uint64(p)
		if st > 0xff {
			return nil, reject("status", "%#x does not fit the 8-bit device status", st)
		}
		s.status = uint8(st)
		return nil, nil

	case ReqGetStatus:
		if err := fixed(m, 0, 0); err != nil {
			return nil, err
		}
		if !s.protoAcked(ProtoStatus) {
			return nil, reject("protocol_features", "GET_STATUS without VHOST_USER_PROTOCOL_F_STATUS")
		}
		return u64Bytes(uint64(s.status)), nil
	}
	return nil, s.unsupported(m)
}

// unsupported refuses requests for features vhostd never offers. Their
// fds are closed by handle.
func (s *session) unsupported(m *Msg) error {
	switch m.Req {
	case ReqSetLogBase, ReqSetLogFd:
		return reject("protocol_features", "dirty logging (VHOST_USER_PROTOCOL_F_LOG_SHMFD) is not offered")
	case ReqSetBackendReqFd:
		return reject("protocol_features", "VHOST_USER_PROTOCOL_F_BACKEND_REQ is not offered")
	case ReqGetInflightFd, ReqSetInflightFd:
		return reject("protocol_features", "VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD is not offered")
	case ReqIOTLBMsg:
		return reject("features", "VIRTIO_F_IOMMU_PLATFORM is not offered")
	case ReqSetVringEndian:
		return reject("protocol_features", "VHOST_USER_PROTOCOL_F_CROSS_ENDIAN is not offered")
	case ReqVringKick:
		return reject("protocol_features", "VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS is not offered")
	case ReqPostcopyAdvise, ReqPostcopyListen, ReqPostcopyEnd:
		return reject("protocol_features", "VHOST_USER_PROTOCOL_F_PAGEFAULT is not offered")
	case ReqCreateCryptoSession, ReqCloseCryptoSession:
		return reject("protocol_features", "not a crypto device")
	case ReqGPUSetSocket:
		return reject("request", "not a GPU device")
	case ReqGetSharedObject, ReqSetDeviceStateFd, ReqCheckDeviceState:
		return reject("protocol_features", "%v is not offered", m.Req)
	}
	return reject("request", "unknown request code %d", uint32(m.Req))
}

func u64Bytes(v uint64) []byte {
	b := make([]byte, 8)
	le.PutUint64(b, v)
	return b
}

func (s *session) anyStarted() bool {
	for i := range s.vrings {
		if s.vrings[i].started {
			return true
		}
	}
	return false
}

func (s *session) setFeatures(f uint64) error {
	if extra := f &^ s.offeredFeatures(); extra != 0 {
		return reject("features", "bits %#x were never offered", extra)
	}
	if s.anyStarted() {
		// QEMU sends SET_FEATURES once per queue pair, the later ones while
		// the first pair runs: the same value is fine, a change is not.
		if s.featuresSet && f == s.features {
			return nil
		}
		return reject("features", "cannot change features (%#x -> %#x) while rings run", s.features, f)
	}
	if err := s.dev.SetFeatures(f &^ bit(FeatProtocolFeatures)); err != nil {
		return reject("features", "%v", err)
	}
	s.features, s.featuresSet = f, true
	return nil
}

func (s *session) setProtocolFeatures(f uint64) error {
	if !s.gotFeatures {
		return reject("features", "SET_PROTOCOL_FEATURES before GET_FEATURES offered VHOST_USER_F_PROTOCOL_FEATURES")
	}
	// vhost-user.rst "In-band notifications": the back-end closes the
	// connection when this is set without BACKEND_REQ and REPLY_ACK
	// (BAD-INPUTS 13).
	if f&bit(ProtoInbandNotification) != 0 && f&(bit(ProtoBackendReq)|bit(ProtoReplyAck)) != bit(ProtoBackendReq)|bit(ProtoReplyAck) {
		return &closeError{reason: "INBAND_NOTIFICATIONS set without BACKEND_REQ and REPLY_ACK"}
	}
	if extra := f &^ s.offeredProto(); extra != 0 {
		return reject("protocol_features", "bits %#x were never offered", extra)
	}
	s.proto, s.protoSet = f, true
	return nil
}

// reset handles RESET_OWNER and RESET_DEVICE (BAD-INPUTS 48): every ring
// stops and is forgotten, acked features are dropped, the socket stays. The
// memory table is kept: front-ends that track which regions they already
// sent (ADD_MEM_REG) do not send them again, and a new SET_MEM_TABLE or
// REM_MEM_REG replaces it as usual.
func (s *session) reset() {
	s.stopAll()
	for i := range s.vrings {
		s.vrings[i].closeFds()
		s.vrings[i] = vring{kick: -1, call: -1, err: -1}
	}
	s.features, s.featuresSet, s.status = 0, false, 0
	s.dev.Reset()
}

func (s *session) stopAll() {
	for i := range s.vrings {
		if s.vrings[i].started {
			s.vrings[i].base = s.dev.StopRing(i)
			s.vrings[i].started = false
		}
	}
}

// teardown releases everything the connection holds (BAD-INPUTS 21, 45).
func (s *session) teardown() {
	s.stopAll()
	for i := range s.vrings {
		s.vrings[i].closeFds()
	}
	s.dev.SetMemory(nil)
	s.mem.Close()
	s.mem = nil
	s.dev.Reset()
}

// ringAreas are the byte extents of a split ring's three parts (virtio 1.x
// 2.7: descriptor table 16*N, available ring 6+2*N, used ring 6+8*N).
func ringAreas(num uint32) (desc, avail, used uint64) {
	n := uint64(num)
	return 16 * n, 6 + 2*n, 6 + 8*n
}

// translate checks a ring's addresses against mem and returns their guest
// physical addresses (BAD-INPUTS 24).
func translate(mem *virtqueue.Memory, num uint32, descVA, availVA, usedVA uint64) (desc, avail, used uint64, err error) {
	dl, al, ul := ringAreas(num)
	var ok bool
	if desc, ok = mem.VAToGPA(descVA, dl); !ok {
		return 0, 0, 0, reject("desc", "%#x+%d is not inside one memory region", descVA, dl)
	}
	if avail, ok = mem.VAToGPA(availVA, al); !ok {
		return 0, 0, 0, reject("avail", "%#x+%d is not inside one memory region", availVA, al)
	}
	if used, ok = mem.VAToGPA(usedVA, ul); !ok {
		return 0, 0, 0, reject("used", "%#x+%d is not inside one memory region", usedVA, ul)
	}
	// virtio 1.x 2.7 alignment: 16, 2 and 4 bytes.
	if desc%16 != 0 {
		return 0, 0, 0, reject("desc", "%#x is not 16-byte aligned", desc)
	}
	if avail%2 != 0 {
		return 0, 0, 0, reject("avail", "%#x is not 2-byte aligned", avail)
	}
	if used%4 != 0 {
		return 0, 0, 0, reject("used", "%#x is not 4-byte aligned", used)
	}
	return desc, avail, used, nil
}

func (s *session) setVringNum(idx, num uint32) error {
	i, err := s.vringIndex(idx)
	if err != nil {
		return err
	}
	if num == 0 || num > maxVringNum || num&(num-1) != 0 {
		return reject("num", "%d: a split ring size is a power of two from 1 to %d", num, maxVringNum)
	}
	v := &s.vrings[i]
	if v.started {
		return reject("num", "vring %d is running", i)
	}
	if v.addrSet && s.mem != nil {
		// The ring areas grow with num: they must still fit.
		if _, _, _, err := translate(s.mem, num, v.descVA, v.availVA, v.usedVA); err != nil {
			return err
		}
	}
	v.num = num
	return nil
}

func (s *session) setVringAddr(p []byte) error {
	i, err := s.vringIndex(le.Uint32(p))
	if err != nil {
		return err
	}
	flags := le.Uint32(p[4:])
	descVA, usedVA, availVA := le.Uint64(p[8:]), le.Uint64(p[16:]), le.Uint64(p[24:])
	if flags != 0 {
		// Bit 0 is VHOST_VRING_F_LOG, used only with dirty logging, which is
		// not offered.
		return reject("flags", "%#x: no vring flags are supported", flags)
	}
	if s.mem == nil {
		return reject("memory", "SET_VRING_ADDR before any memory table")
	}
	v := &s.vrings[i]
	if v.num == 0 {
		return reject("num", "SET_VRING_ADDR for vring %d before SET_VRING_NUM", i)
	}
	if v.started {
		return reject("index", "vring %d is running", i)
	}
	if _, _, _, err := translate(s.mem, v.num, descVA, availVA, usedVA); err != nil {
		return err
	}
	v.descVA, v.availVA, v.usedVA, v.addrSet = descVA, availVA, usedVA, true
	return nil
}

func (s *session) setVringBase(idx, num uint32) error {
	i, err := s.vringIndex(idx)
	if err != nil {
		return err
	}
	if num > 0xffff {
		return reject("num", "base %d exceeds 65535", num)
	}
	if s.vrings[i].started {
		return reject("index", "vring %d is running", i)
	}
	s.vrings[i].base = uint16(num)
	return nil
}

func (s *session) getVringBase(idx uint32) ([]byte, error) {
	i, err := s.vringIndex(idx)
	if err != nil {
		return nil, err
	}
	v := &s.vrings[i]
	if v.started {
		v.base = s.dev.StopRing(i)
		v.started = false
	}
	// The ring is stopped; a new SET_VRING_KICK starts it again.
	if v.kick >= 0 {
		unix.Close(v.kick)
		v.kick = -1
	}
	v.kickSet = false
	b := make([]byte, 8)
	le.PutUint32(b, idx)
	le.PutUint32(b[4:], uint32(v.base))
	return b, nil
}

func (s *session) setVringFd(m *Msg) error {
	if len(m.Payload) != 8 {
		return payloadSize(m, 8)
	}
	u := le.Uint64(m.Payload)
	if u&^uint64(vringIndexMask|vringNoFd) != 0 {
		return reject("u64", "%#x has bits set beyond the index and the no-fd flag", u)
	}
	want := 1
	if u&vringNoFd != 0 {
		want = 0
	}
	if err := fdCount(m, want); err != nil {
		return err
	}
	i, err := s.vringIndex(uint32(u & vringIndexMask))
	if err != nil {
		return err
	}
	fd := -1
	if want == 1 {
		fd = m.Fds[0]
	}
	v := &s.vrings[i]
	switch m.Req {
	case ReqSetVringKick:
		if err := s.checkStartable(i); err != nil {
			return err
		}
		if fd >= 0 {
			m.takeFd(0)
		}
		// Replacing the kick of a running ring restarts it at the index
		// it reached (BAD-INPUTS 9: the old fd is closed).
		if v.started {
			v.base = s.dev.StopRing(i)
			v.started = false
		}
		if v.kick >= 0 {
			unix.Close(v.kick)
		}
		v.kick, v.kickSet = fd, true
		if err := s.start(i); err != nil {
			// The device refused: the message is rejected, so the fd it
			// brought is closed rather than kept for a ring that never ran.
			if v.kick >= 0 {
				unix.Close(v.kick)
			}
			v.kick, v.kickSet = -1, false
			return err
		}
		return nil
	case ReqSetVringCall:
		if fd >= 0 {
			m.takeFd(0)
		}
		old := v.call
		v.call = fd
		if v.started {
			s.dev.SetCallFd(i, fd)
		}
		if old >= 0 {
			unix.Close(old)
		}
	case ReqSetVringErr:
		if fd >= 0 {
			m.takeFd(0)
		}
		old := v.err
		v.err = fd
		if v.started {
			s.dev.SetErrFd(i, fd)
		}
		if old >= 0 {
			unix.Close(old)
		}
	}
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
	_, _, _, err := translate(s.mem, v.num, v.descVA, v.availVA, v.usedVA)
	return err
}

func (s *session) start(i int) error {
	v := &s.vrings[i]
	desc, avail, used, err := translate(s.mem, v.num, v.descVA, v.availVA, v.usedVA)
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
		Index: i, Size: uint16(v.num), Desc: desc, Avail: avail, Used: used, Base: v.base,
		EventIdx: s.features&bit(FeatRingEventIdx) != 0,
		Indirect: s.features&bit(FeatRingIndirectDesc) != 0,
		Kick:     v.kick, Call: v.call, Err: v.err, Enabled: enabled,
	}
	if v.num == maxVringNum {
		// Size is a uint16: 32768 fits, but keep the arithmetic obvious.
		spec.Size = uint16(maxVringNum)
	}
	if err := s.dev.StartRing(spec); err != nil {
		return reject("vring", "device refused to start vring %d: %v", i, err)
	}
	v.started = true
	v.enabled = enabled
	return nil
}

func (s *session) setVringEnable(idx, num uint32) error {
	if !s.protoSet {
		return reject("protocol_features", "SET_VRING_ENABLE before SET_PROTOCOL_FEATURES")
	}
	i, err := s.vringIndex(idx)
	if err != nil {
		return err
	}
	if num > 1 {
		return reject("num", "%d: enable is 0 or 1", num)
	}
	v := &s.vrings[i]
	v.enabled = num == 1
	if v.started {
		s.dev.EnableRing(i, v.enabled)
	}
	return nil
}

func (s *session) config(m *Msg) ([]byte, error) {
	if err := fdCount(m, 0); err != nil {
		return nil, err
	}
	if !s.protoAcked(ProtoConfig) {
		return nil, reject("protocol_features", "%v without VHOST_USER_PROTOCOL_F_CONFIG", m.Req)
	}
	p := m.Payload
	if len(p) < configHdrSize {
		return nil, reject("size", "%d bytes, shorter than the 12-byte config header", len(p))
	}
	off, size, flags := le.Uint32(p), le.Uint32(p[4:]), le.Uint32(p[8:])
	if size > maxConfigSize {
		return nil, reject("size", "config size %d exceeds %d", size, maxConfigSize)
	}
	if uint32(len(p)) != configHdrSize+size {
		return nil, reject("size", "%d bytes, want 12+%d", len(p), size)
	}
	cfg := s.dev.Config()
	if uint64(off)+uint64(size) > uint64(len(cfg)) {
		return nil, reject("offset", "%d+%d is beyond the %d-byte config space", off, size, len(cfg))
	}
	if flags > 1 {
		return nil, reject("flags", "%#x: only 0 (driver write) and 1 (migration) exist", flags)
	}
	if m.Req == ReqGetConfig {
		out := make([]byte, configHdrSize+size)
		copy(out, p[:configHdrSize])
		copy(out[configHdrSize:], cfg[off:off+size])
		return out, nil
	}
	if err := s.dev.WriteConfig(off, p[configHdrSize:], flags == 1); err != nil {
		return nil, reject("payload", "%v", err)
	}
	return nil, nil
}

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
		d, a, u, err := translate(mem, v.num, v.descVA, v.availVA, v.usedVA)
		if err != nil {
			return reject("regions", "running vring %d would not translate: %v", i, err)
		}
		// The device runs the ring at the guest physical addresses it was
		// started with: the new table must map the ring's user addresses to
		// the same ones, or the running ring would read the wrong memory.
		od, oa, ou, err := translate(s.mem, v.num, v.descVA, v.availVA, v.usedVA)
		if err != nil || d != od || a != oa || u != ou {
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

func (s *session) setMemTable(m *Msg) error {
	p := m.Payload
	if len(p) < 8 {
		return reject("size", "%d bytes, shorter than the 8-byte table header", len(p))
	}
	n := le.Uint32(p)
	if n == 0 || n > MaxRegions {
		return reject("nregions", "%d, want 1..%d", n, MaxRegions)
	}
	if err := payloadSize(m, 8+regionSize*int(n)); err != nil {
		return err
	}
	if err := fdCount(m, int(n)); err != nil {
		return err
	}
	specs := make([]virtqueue.RegionSpec, n)
	for i := range specs {
		specs[i] = regionSpec(p[8+regionSize*i:])
		if err := specs[i].Validate(); err != nil {
			return reject(fmt.Sprintf("regions[%d]", i), "%v", err)
		}
	}
	regions := make([]*virtqueue.Region, 0, n)
	closeAll := func() {
		for _, r := range regions {
			r.Close()
		}
	}
	for i := range specs {
		r, err := virtqueue.MapRegion(m.takeFd(i), specs[i])
		if err != nil {
			closeAll()
			return reject(fmt.Sprintf("regions[%d]", i), "%v", err)
		}
		regions = append(regions, r)
	}
	mem, err := virtqueue.NewMemory(regions)
	if err != nil {
		closeAll()
		return reject("regions", "%v", err)
	}
	if err := s.checkRings(mem); err != nil {
		closeAll()
		return err
	}
	s.swapMemory(mem).Close()
	return nil
}

func (s *session) addMemReg(m *Msg) error {
	if !s.protoAcked(ProtoConfigureMemSlots) {
		return reject("protocol_features", "ADD_MEM_REG without VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS")
	}
	if err := fixed(m, memRegMsgSize, 1); err != nil {
		return err
	}
	if s.mem.Len() >= MaxMemSlots {
		return reject("regions", "already %d regions, the advertised maximum", s.mem.Len())
	}
	spec := regionSpec(m.Payload[8:])
	if err := spec.Validate(); err != nil {
		return reject("region", "%v", err)
	}
	r, err := virtqueue.MapRegion(m.takeFd(0), spec)
	if err != nil {
		return reject("region", "%v", err)
	}
	mem, err := virtqueue.NewMemory(append(append([]*virtqueue.Region(nil), s.mem.Regions()...), r))
	if err != nil {
		r.Close()
		return reject("region", "%v", err)
	}
	s.swapMemory(mem) // the old table's regions live on in the new one
	return nil
}

func (s *session) remMemReg(m *Msg) error {
	if !s.protoAcked(ProtoConfigureMemSlots) {
		return reject("protocol_features", "REM_MEM_REG without VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS")
	}
	// vhost-user.rst: no fd should come, but one is tolerated and closed.
	if m.Truncated || len(m.Fds) > 1 {
		return reject("fds", "%d fds attached, want 0 or 1", len(m.Fds))
	}
	if err := payloadSize(m, memRegMsgSize); err != nil {
		return err
	}
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
		return reject("region", "no region at gpa %#x size %#x uaddr %#x", spec.GPA, spec.Size, spec.UserAddr)
	}
	var mem *virtqueue.Memory
	if len(keep) > 0 {
		var err error
		if mem, err = virtqueue.NewMemory(keep); err != nil {
			return reject("region", "%v", err)
		}
		if err := s.checkRings(mem); err != nil {
			return err
		}
	} else if s.anyStarted() {
		return reject("region", "the last region is in use by running rings")
	}
	s.swapMemory(mem)
	victim.Close()
	return nil
}
