package vhost

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/virtqueue"
)

// session is the protocol state of one front-end connection. It is used by
// the connection's goroutine only.
type session struct {
	log  hclog.Logger
	dev  Device
	conn *msgConn
	// lim is the server's: it rate-limits the rejection log across
	// connections.
	lim *rateLimiter

	gotFeatures bool   // GET_FEATURES answered: the front-end has seen bit 30
	features    uint64 // acked virtio features (SET_FEATURES)
	featuresSet bool
	protoSet    bool
	proto       uint64 // acked protocol features
	status      uint8
	mem         *virtqueue.Memory
	vrings      []vring
	logs        logState   // dirty log (dirtylog.go)
	xfer        *stateXfer // device state transfer under way (devstate_xfer.go)
	// warnedUnsealed: a region fd not sealed against shrinking was
	// warned about (fdcheck.go, once per connection).
	warnedUnsealed bool
}

func newSession(log hclog.Logger, dev Device, conn *msgConn, lim *rateLimiter) *session {
	s := &session{log: log, dev: dev, conn: conn, lim: lim}
	s.vrings = make([]vring, dev.NumVrings())
	for i := range s.vrings {
		s.vrings[i] = newVring()
	}
	return s
}

func (s *session) offeredFeatures() uint64 {
	f := s.dev.Features() | bit(FeatProtocolFeatures)
	if _, ok := s.logger(); ok {
		f |= bit(FeatLogAll)
	}
	return f
}

func (s *session) offeredProto() uint64 {
	p := baseProtocolFeatures | s.dev.ProtocolFeatures()
	if _, ok := s.logger(); ok {
		p |= bit(ProtoLogShmfd)
	}
	if _, ok := s.migrator(); ok {
		p |= bit(ProtoDeviceState)
	}
	return p
}

// vhostOnly are the feature bits vhost handles itself: the device never
// sees them.
const vhostOnly = 1<<FeatProtocolFeatures | 1<<FeatLogAll

func (s *session) protoAcked(b uint) bool { return s.protoSet && s.proto&bit(b) != 0 }

// next reads one message and handles it. It returns a non-nil error when
// the connection must be closed. Every fd the message carried is kept by a
// handler or closed here.
func (s *session) next() error {
	m, err := s.conn.readHeader()
	if err != nil {
		return err
	}
	defer m.closeFds()
	s.log.Debug("message", "request", m.Req.String(), "flags", m.Flags, "size", m.size, "fds", len(m.Fds))
	r, err := s.precheck(m)
	if err != nil {
		// Refused from the header alone: answer at once, then skip the
		// payload so that the next message is found where it starts.
		if err := s.refuse(m, r, err); err != nil {
			return err
		}
		return s.conn.skipPayload(m)
	}
	if err := s.conn.readPayload(m); err != nil {
		return err
	}
	var reply []byte
	if err = r.fds.check(m, true); err == nil {
		reply, err = r.do(s, m)
	}
	if err != nil {
		return s.refuse(m, r, err)
	}
	if reply != nil {
		return s.conn.reply(m.Req, reply)
	}
	if m.needReply() {
		return s.conn.replyU64(m.Req, 0)
	}
	return nil
}

// refuse logs a refused message, closes its fds and gives the front-end
// the failure answer r's reply kind calls for. It returns a non-nil error
// when the connection must be closed.
func (s *session) refuse(m *Msg, r rule, err error) error {
	var rej *rejectError
	if !errors.As(err, &rej) {
		var cl *closeError
		if errors.As(err, &cl) {
			s.lim.log(s.log, "closing connection", "request", m.Req.String(), "reason", cl.reason)
		}
		return err
	}
	s.lim.log(s.log, "rejected message", "request", m.Req.String(), "field", rej.field, "reason", rej.reason)
	m.closeFds()
	switch r.reply {
	case emptyOnFailure:
		return s.conn.reply(m.Req, nil)
	case u64OnFailure:
		return s.conn.replyU64(m.Req, 1)
	case ownReplyIfGated:
		if s.protoAcked(r.gate.bit) {
			return &closeError{reason: fmt.Sprintf("%v rejected and it has no failure reply", m.Req)}
		}
	case ownReply:
		return &closeError{reason: fmt.Sprintf("%v rejected and it has no failure reply", m.Req)}
	}
	if m.needReply() {
		return s.conn.replyU64(m.Req, 1)
	}
	return nil
}

func u64Bytes(v uint64) []byte {
	b := make([]byte, 8)
	le.PutUint64(b, v)
	return b
}

func (s *session) getFeatures(*Msg) ([]byte, error) {
	s.gotFeatures = true
	return u64Bytes(s.offeredFeatures()), nil
}

func (s *session) setFeatures(m *Msg) ([]byte, error) {
	f := le.Uint64(m.Payload)
	if extra := f &^ s.offeredFeatures(); extra != 0 {
		return nil, reject("features", "bits %#x were never offered", extra)
	}
	if s.anyStarted() {
		// QEMU sends SET_FEATURES once per queue pair, the later ones while
		// the first pair runs: the same value is fine, and so is turning
		// VHOST_F_LOG_ALL on or off (migration starts or ends while the
		// rings run); any other change is not.
		if s.featuresSet && (f == s.features || f^s.features == bit(FeatLogAll)) {
			s.setLogAll(f)
			return nil, nil
		}
		return nil, reject("features", "cannot change features (%#x -> %#x) while rings run", s.features, f)
	}
	if err := s.dev.SetFeatures(f &^ vhostOnly); err != nil {
		return nil, reject("features", "%v", err)
	}
	s.setLogAll(f)
	s.featuresSet = true
	return nil, nil
}

// setLogAll records f's VHOST_F_LOG_ALL and starts or stops logging.
func (s *session) setLogAll(f uint64) {
	changed := (f^s.features)&bit(FeatLogAll) != 0
	s.features = f
	if lg, ok := s.logger(); ok && changed {
		s.applyLog(lg)
	}
}

func (s *session) getProtocolFeatures(*Msg) ([]byte, error) {
	if !s.gotFeatures {
		return nil, reject("features", "GET_PROTOCOL_FEATURES before GET_FEATURES offered VHOST_USER_F_PROTOCOL_FEATURES")
	}
	return u64Bytes(s.offeredProto()), nil
}

func (s *session) setProtocolFeatures(m *Msg) ([]byte, error) {
	f := le.Uint64(m.Payload)
	if !s.gotFeatures {
		return nil, reject("features", "SET_PROTOCOL_FEATURES before GET_FEATURES offered VHOST_USER_F_PROTOCOL_FEATURES")
	}
	// vhost-user.rst "In-band notifications": the back-end closes the
	// connection when this is set without BACKEND_REQ and REPLY_ACK
	// (BAD-INPUTS 13).
	both := bit(ProtoBackendReq) | bit(ProtoReplyAck)
	if f&bit(ProtoInbandNotification) != 0 && f&both != both {
		return nil, &closeError{reason: "INBAND_NOTIFICATIONS set without BACKEND_REQ and REPLY_ACK"}
	}
	if extra := f &^ s.offeredProto(); extra != 0 {
		return nil, reject("protocol_features", "bits %#x were never offered", extra)
	}
	s.proto, s.protoSet = f, true
	return nil, nil
}

// setOwner accepts SET_OWNER. It is idempotent (some front-ends send it
// once per queue pair) and nothing depends on it.
func (s *session) setOwner(*Msg) ([]byte, error) { return nil, nil }

func (s *session) getQueueNum(*Msg) ([]byte, error) { return u64Bytes(s.dev.QueueNum()), nil }

func (s *session) getMaxMemSlots(*Msg) ([]byte, error) { return u64Bytes(MaxMemSlots), nil }

// resetOwner handles RESET_OWNER and RESET_DEVICE (BAD-INPUTS 48): every
// ring stops and is forgotten, acked features are dropped, the socket
// stays. The memory table is kept: front-ends that track which regions they
// already sent (ADD_MEM_REG) do not send them again, and a new
// SET_MEM_TABLE or REM_MEM_REG replaces it as usual.
func (s *session) resetOwner(*Msg) ([]byte, error) {
	s.abortXfer()
	s.stopAll()
	s.dropLog()
	for i := range s.vrings {
		s.vrings[i].closeFds()
		s.vrings[i] = newVring()
	}
	s.features, s.featuresSet, s.status = 0, false, 0
	s.dev.Reset()
	return nil, nil
}

// teardown releases everything the connection holds (BAD-INPUTS 21, 45).
func (s *session) teardown() {
	s.abortXfer()
	s.stopAll()
	s.dropLog()
	for i := range s.vrings {
		s.vrings[i].closeFds()
	}
	s.dev.SetMemory(nil)
	s.mem.Close()
	s.mem = nil
	s.dev.Reset()
}

func (s *session) setMTU(m *Msg) ([]byte, error) {
	mtu := le.Uint64(m.Payload)
	// virtio 1.x 5.1.4.1: the MTU is at least 68 and fits in 16 bits.
	if mtu < 68 || mtu > 65535 {
		return nil, reject("mtu", "%d outside 68..65535", mtu)
	}
	if err := limit(s.lim.actions.mtu, m.Req); err != nil {
		return nil, err
	}
	if err := s.dev.SetMTU(uint16(mtu)); err != nil {
		return nil, reject("mtu", "%v", err)
	}
	return nil, nil
}

func (s *session) sendRARP(m *Msg) ([]byte, error) {
	var mac [6]byte
	copy(mac[:], m.Payload)
	if err := limit(s.lim.actions.rarp, m.Req); err != nil {
		return nil, err
	}
	if err := s.dev.SendRARP(mac); err != nil {
		return nil, reject("mac", "%v", err)
	}
	return nil, nil
}

func (s *session) setStatus(m *Msg) ([]byte, error) {
	st := le.Uint64(m.Payload)
	if st > 0xff {
		return nil, reject("status", "%#x does not fit the 8-bit device status", st)
	}
	s.status = uint8(st)
	return nil, nil
}

func (s *session) getStatus(*Msg) ([]byte, error) { return u64Bytes(uint64(s.status)), nil }

// config handles GET_CONFIG and SET_CONFIG; the table checked the payload
// holds the 12-byte header and at most maxConfigSize bytes behind it.
func (s *session) config(m *Msg) ([]byte, error) {
	p := m.Payload
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
