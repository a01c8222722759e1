package vhost

import "fmt"

// rule is what vhostd knows about one request before running it: the wire
// shape every such message must have, the protocol feature it needs, what
// the front-end waits for, and the handler. session.precheck applies the
// rule from the header alone, before any payload byte is read; only the fd
// count is checked again once the payload is in (fds can ride along with
// any part of a message).
type rule struct {
	name string // as in vhost-user.rst, without the VHOST_USER_ prefix
	// size is the payload size the header must declare.
	size span
	fds  fdRule
	// gate is the protocol feature the request needs acked.
	gate gate
	// reply is what the front-end waits for, and so what a refusal answers.
	reply replyKind
	// refused is set for requests vhostd never offers: they are refused
	// whatever they carry, before any other check.
	refused error
	// do runs the request once every check of the rule has passed. A
	// non-nil reply is sent as the request's own answer.
	do func(s *session, m *Msg) (reply []byte, err error)
}

// requests is the table of every request code vhostd knows; a code not in
// it is refused as unknown. Codes arrive from an untrusted peer: they are
// only looked up here, never used as an index.
var requests = map[Request]rule{
	ReqGetFeatures:         {name: "GET_FEATURES", reply: ownReply, do: (*session).getFeatures},
	ReqSetFeatures:         {name: "SET_FEATURES", size: exactly(u64Size), do: (*session).setFeatures},
	ReqSetOwner:            {name: "SET_OWNER", do: (*session).setOwner},
	ReqResetOwner:          {name: "RESET_OWNER", do: (*session).resetOwner},
	ReqSetMemTable:         {name: "SET_MEM_TABLE", size: span{memTableHdrSize, maxPayload}, fds: regionFds, do: (*session).setMemTable},
	ReqSetVringNum:         {name: "SET_VRING_NUM", size: exactly(vringStateSize), do: (*session).setVringNum},
	ReqSetVringAddr:        {name: "SET_VRING_ADDR", size: exactly(vringAddrSize), do: (*session).setVringAddr},
	ReqSetVringBase:        {name: "SET_VRING_BASE", size: exactly(vringStateSize), do: (*session).setVringBase},
	ReqGetVringBase:        {name: "GET_VRING_BASE", size: exactly(vringStateSize), reply: ownReply, do: (*session).getVringBase},
	ReqSetVringKick:        {name: "SET_VRING_KICK", size: exactly(u64Size), fds: maybeFd, do: (*session).setVringKick},
	ReqSetVringCall:        {name: "SET_VRING_CALL", size: exactly(u64Size), fds: maybeFd, do: (*session).setVringCall},
	ReqSetVringErr:         {name: "SET_VRING_ERR", size: exactly(u64Size), fds: maybeFd, do: (*session).setVringErr},
	ReqGetProtocolFeatures: {name: "GET_PROTOCOL_FEATURES", reply: ownReply, do: (*session).getProtocolFeatures},
	ReqSetProtocolFeatures: {name: "SET_PROTOCOL_FEATURES", size: exactly(u64Size), do: (*session).setProtocolFeatures},
	ReqGetQueueNum:         {name: "GET_QUEUE_NUM", gate: gate{ProtoMQ, "MQ"}, reply: ownReply, do: (*session).getQueueNum},
	ReqSetVringEnable:      {name: "SET_VRING_ENABLE", size: exactly(vringStateSize), do: (*session).setVringEnable},
	ReqSendRARP:            {name: "SEND_RARP", size: exactly(u64Size), gate: gate{ProtoRARP, "RARP"}, do: (*session).sendRARP},
	ReqNetSetMTU:           {name: "NET_SET_MTU", size: exactly(u64Size), gate: gate{ProtoNetMTU, "NET_MTU"}, do: (*session).setMTU},
	ReqGetConfig:           {name: "GET_CONFIG", size: span{configHdrSize, configHdrSize + maxConfigSize}, gate: gate{ProtoConfig, "CONFIG"}, reply: emptyOnFailure, do: (*session).config},
	ReqSetConfig:           {name: "SET_CONFIG", size: span{configHdrSize, configHdrSize + maxConfigSize}, gate: gate{ProtoConfig, "CONFIG"}, do: (*session).config},
	ReqResetDevice:         {name: "RESET_DEVICE", gate: gate{ProtoResetDevice, "RESET_DEVICE"}, do: (*session).resetOwner},
	ReqGetMaxMemSlots:      {name: "GET_MAX_MEM_SLOTS", gate: gate{ProtoConfigureMemSlots, "CONFIGURE_MEM_SLOTS"}, reply: ownReply, do: (*session).getMaxMemSlots},
	ReqAddMemReg:           {name: "ADD_MEM_REG", size: exactly(memRegMsgSize), fds: oneFd, gate: gate{ProtoConfigureMemSlots, "CONFIGURE_MEM_SLOTS"}, do: (*session).addMemReg},
	ReqRemMemReg:           {name: "REM_MEM_REG", size: exactly(memRegMsgSize), fds: maybeFd, gate: gate{ProtoConfigureMemSlots, "CONFIGURE_MEM_SLOTS"}, do: (*session).remMemReg},
	ReqSetStatus:           {name: "SET_STATUS", size: exactly(u64Size), gate: gate{ProtoStatus, "STATUS"}, do: (*session).setStatus},
	ReqGetStatus:           {name: "GET_STATUS", gate: gate{ProtoStatus, "STATUS"}, reply: ownReply, do: (*session).getStatus},
	ReqSetDeviceStateFd:    {name: "SET_DEVICE_STATE_FD", size: exactly(deviceStateSize), fds: oneFd, gate: gate{ProtoDeviceState, "DEVICE_STATE"}, reply: u64OnFailure, do: (*session).setDeviceStateFd},
	ReqCheckDeviceState:    {name: "CHECK_DEVICE_STATE", gate: gate{ProtoDeviceState, "DEVICE_STATE"}, reply: u64OnFailure, do: (*session).checkDeviceState},
	ReqSetLogBase:          {name: "SET_LOG_BASE", size: exactly(logBaseSize), fds: oneFd, gate: gate{ProtoLogShmfd, "LOG_SHMFD"}, reply: ownReplyIfGated, do: (*session).setLogBase},

	// Requests for features vhostd never offers. Their fds are closed.
	ReqSetLogFd:            {name: "SET_LOG_FD", refused: notOffered("dirty logging (VHOST_USER_PROTOCOL_F_LOG_SHMFD)")},
	ReqSetBackendReqFd:     {name: "SET_BACKEND_REQ_FD", refused: notOffered("VHOST_USER_PROTOCOL_F_BACKEND_REQ")},
	ReqIOTLBMsg:            {name: "IOTLB_MSG", reply: u64OnFailure, refused: reject("features", "VIRTIO_F_IOMMU_PLATFORM is not offered")},
	ReqSetVringEndian:      {name: "SET_VRING_ENDIAN", refused: notOffered("VHOST_USER_PROTOCOL_F_CROSS_ENDIAN")},
	ReqCreateCryptoSession: {name: "CREATE_CRYPTO_SESSION", reply: ownReply, refused: reject("protocol_features", "not a crypto device")},
	ReqCloseCryptoSession:  {name: "CLOSE_CRYPTO_SESSION", refused: reject("protocol_features", "not a crypto device")},
	ReqPostcopyAdvise:      {name: "POSTCOPY_ADVISE", reply: ownReply, refused: notOffered("VHOST_USER_PROTOCOL_F_PAGEFAULT")},
	ReqPostcopyListen:      {name: "POSTCOPY_LISTEN", refused: notOffered("VHOST_USER_PROTOCOL_F_PAGEFAULT")},
	ReqPostcopyEnd:         {name: "POSTCOPY_END", reply: ownReply, refused: notOffered("VHOST_USER_PROTOCOL_F_PAGEFAULT")},
	ReqGetInflightFd:       {name: "GET_INFLIGHT_FD", reply: ownReply, refused: notOffered("VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD")},
	ReqSetInflightFd:       {name: "SET_INFLIGHT_FD", refused: notOffered("VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD")},
	ReqGPUSetSocket:        {name: "GPU_SET_SOCKET", refused: reject("request", "not a GPU device")},
	ReqVringKick:           {name: "VRING_KICK", refused: notOffered("VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS")},
	ReqGetSharedObject:     {name: "GET_SHARED_OBJECT", reply: ownReply, refused: notOffered("VHOST_USER_PROTOCOL_F_SHARED_OBJECT")},
}

func notOffered(what string) error {
	return reject("protocol_features", "%s is not offered", what)
}

func (r Request) String() string {
	if e, ok := requests[r]; ok {
		return e.name
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint32(r))
}

// span is a payload size range in bytes, both ends included. The zero span
// is an empty payload.
type span struct{ min, max uint32 }

func exactly(n uint32) span { return span{n, n} }

func (s span) check(m *Msg) error {
	switch {
	case s.min <= m.size && m.size <= s.max:
		return nil
	case s.min == s.max:
		return reject("size", "%d bytes, %v takes exactly %d", m.size, m.Req, s.min)
	}
	return reject("size", "%d bytes, %v takes %d to %d", m.size, m.Req, s.min, s.max)
}

// fdRule is how many fds a request takes. The zero rule is none.
type fdRule uint8

const (
	noFd      fdRule = iota
	oneFd            // exactly one: ADD_MEM_REG
	maybeFd          // none or one: SET_VRING_KICK/CALL/ERR (their handler checks the u64's no-fd bit against it); REM_MEM_REG (one is tolerated and closed)
	regionFds        // one per region: SET_MEM_TABLE checks the count against nregions itself, so that a bad nregions is named first
)

func (f fdRule) bounds() (min, max int) {
	switch f {
	case oneFd:
		return 1, 1
	case maybeFd:
		return 0, 1
	case regionFds:
		return 0, maxFds // Msg.addFds keeps no more
	}
	return 0, 0
}

// check counts the fds received so far. With final false (only the header
// is in) it refuses too many; with final true (the whole message is in)
// too few as well (BAD-INPUTS 6, 7, 8, 15).
func (f fdRule) check(m *Msg, final bool) error {
	switch {
	case m.Truncated:
		return reject("fds", "more than %d fds sent (control message truncated)", 2*maxFds)
	case m.excess > 0:
		return reject("fds", "%d fds sent, a message carries at most %d", len(m.Fds)+m.excess, maxFds)
	}
	min, max := f.bounds()
	n := len(m.Fds)
	if n > max || final && n < min {
		if min == max {
			return reject("fds", "%d fds attached, %v takes %d", n, m.Req, min)
		}
		return reject("fds", "%d fds attached, %v takes %d to %d", n, m.Req, min, max)
	}
	return nil
}

// gate is a protocol feature bit and its name after
// VHOST_USER_PROTOCOL_F_; the zero gate (no name) lets every request by.
type gate struct {
	bit  uint
	name string
}

// replyKind is what the front-end waits for after a request, and so what a
// refusal must answer (vhost-user.rst, "Communication").
type replyKind uint8

const (
	// ackReply: nothing, or a REPLY_ACK u64 when NEED_REPLY is set (0 for
	// success, 1 for failure).
	ackReply replyKind = iota
	// ownReply: a reply of its own, which has no failure form: the
	// front-end would wait for ever, so a refusal closes the connection.
	ownReply
	// emptyOnFailure: GET_CONFIG, whose empty payload means it failed.
	emptyOnFailure
	// u64OnFailure: IOTLB_MSG, SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE,
	// whose non-zero u64 means it failed.
	u64OnFailure
	// ownReplyIfGated: SET_LOG_BASE, which has a reply of its own once its
	// protocol feature is acked (QEMU then waits for it) and is an
	// ordinary request before: refused without the feature, it answers as
	// ackReply does; refused with it, it closes as ownReply does.
	ownReplyIfGated
)

// precheck applies m's rule from its header alone (and the fds that came
// with it): an unknown or unoffered request, too many fds, a size the
// request never has, or a protocol feature not acked refuse it before any
// payload byte is read. It returns the rule (the zero rule for an unknown
// code).
func (s *session) precheck(m *Msg) (rule, error) {
	r, ok := requests[m.Req]
	switch {
	case !ok:
		return r, reject("request", "unknown request code %d", uint32(m.Req))
	case r.refused != nil:
		return r, r.refused
	}
	if err := r.fds.check(m, false); err != nil {
		return r, err
	}
	if err := r.size.check(m); err != nil {
		return r, err
	}
	if r.gate.name != "" && !s.protoAcked(r.gate.bit) {
		return r, reject("protocol_features", "%v without VHOST_USER_PROTOCOL_F_%s", m.Req, r.gate.name)
	}
	return r, nil
}
