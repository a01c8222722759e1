package vhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// The wire format is in the machine's native byte order (vhost-user.rst,
// "Message Specification"); vhostd runs on little-endian hosts only, where
// that is little-endian.
var le = binary.LittleEndian

// Msg is one request read from the front-end. After readHeader it holds the
// header and the fds that came with it; after readPayload, Payload is
// exactly the size the header declared. Fds are the descriptors that
// arrived with it, owned by whoever holds the Msg: every path either keeps
// each fd or closes it.
type Msg struct {
	Req     Request
	Flags   uint32
	Payload []byte
	Fds     []int
	// Truncated is set when the kernel reported MSG_CTRUNC: more fds were
	// sent than fit (the ones that did not fit are already closed).
	Truncated bool
	// excess counts the fds that arrived beyond maxFds: each was closed on
	// arrival, so a message read in many pieces never holds more than
	// maxFds, and the message is refused (fdRule.check).
	excess int
	size   uint32 // the payload size the header declared
}

// addFds keeps the fds one read brought, up to maxFds in all, and closes
// the rest at once.
func (m *Msg) addFds(fds []int) {
	room := max(maxFds-len(m.Fds), 0)
	if len(fds) > room {
		for _, fd := range fds[room:] {
			unix.Close(fd)
		}
		m.excess += len(fds) - room
		fds = fds[:room]
	}
	m.Fds = append(m.Fds, fds...)
}

// closeFds closes every fd the message still owns.
func (m *Msg) closeFds() {
	for _, fd := range m.Fds {
		unix.Close(fd)
	}
	m.Fds = nil
}

// takeFd hands fd i to the caller; the message no longer closes it.
func (m *Msg) takeFd(i int) int {
	fd := m.Fds[i]
	m.Fds[i] = -1
	return fd
}

// needReply reports whether the front-end asked for a REPLY_ACK answer.
func (m *Msg) needReply() bool { return m.Flags&FlagNeedReply != 0 }

// msgConn reads and writes vhost-user messages on a unix stream socket.
type msgConn struct {
	uc  *net.UnixConn
	oob []byte
	// junk receives the payload of a message refused from its header.
	junk []byte
}

func newMsgConn(uc *net.UnixConn) *msgConn {
	// Room for twice the legitimate maximum, so a message carrying more
	// than maxFds is seen whole and rejected rather than truncated.
	return &msgConn{uc: uc, oob: make([]byte, unix.CmsgSpace(2*maxFds*4))}
}

// readFull reads len(b) bytes, collecting any fds that arrive on the way
// into m (at most maxFds: Msg.addFds). io.EOF is returned only when
// nothing at all was read.
func (c *msgConn) readFull(b []byte, m *Msg) error {
	got := 0
	for got < len(b) {
		n, oobn, flags, _, err := c.uc.ReadMsgUnix(b[got:], c.oob)
		if oobn > 0 {
			m.addFds(parseRights(c.oob[:oobn]))
		}
		if flags&unix.MSG_CTRUNC != 0 {
			m.Truncated = true
		}
		got += n
		if err != nil {
			// ReadMsgUnix reports end of stream as a *net.OpError
			// wrapping io.EOF, never as io.EOF itself.
			if errors.Is(err, io.EOF) {
				if got > 0 {
					return io.ErrUnexpectedEOF
				}
				return io.EOF
			}
			return err
		}
		if n == 0 {
			if got == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		r, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

// readHeader reads one message header and the fds that came with it. On a
// framing fault (BAD-INPUTS 1, 2, 4) it returns a *FramingError; on EOF
// io.EOF. Fds received with a header that fails are closed before it
// returns. The payload is left for readPayload or skipPayload: nothing is
// allocated for it yet.
func (c *msgConn) readHeader() (*Msg, error) {
	var hdr [headerSize]byte
	m := &Msg{}
	if err := c.readFull(hdr[:], m); err != nil {
		m.closeFds()
		if err == io.ErrUnexpectedEOF {
			return nil, &FramingError{Field: "header", Reason: "connection closed inside the 12-byte header"}
		}
		return nil, err
	}
	m.Req = Request(le.Uint32(hdr[0:]))
	m.Flags = le.Uint32(hdr[4:])
	m.size = le.Uint32(hdr[8:])
	if err := checkFraming(m); err != nil {
		m.closeFds()
		return nil, err
	}
	return m, nil
}

// checkFraming checks the header fields every request shares.
func checkFraming(m *Msg) error {
	fault := func(field, format string, args ...any) error {
		return &FramingError{Req: m.Req, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case m.size > maxPayload:
		return fault("size", "%d exceeds the %d-byte limit", m.size, maxPayload)
	case m.Flags&flagVersionMask != flagVersion:
		return fault("flags", "version %d, want 1", m.Flags&flagVersionMask)
	case m.Flags&FlagReply != 0:
		return fault("flags", "reply bit set on a request")
	case m.Flags&^uint32(flagKnownMask) != 0:
		return fault("flags", "reserved bits %#x set", m.Flags&^uint32(flagKnownMask))
	}
	return nil
}

// readPayload reads the payload m's header declared, and any fds that come
// with it. On failure m keeps the fds it received: its owner closes them.
func (c *msgConn) readPayload(m *Msg) error {
	m.Payload = make([]byte, m.size)
	return c.payloadInto(m, m.Payload)
}

// skipPayload reads and drops the payload of a message refused from its
// header, so that the next read starts at the next header.
func (c *msgConn) skipPayload(m *Msg) error {
	if c.junk == nil {
		c.junk = make([]byte, maxPayload)
	}
	return c.payloadInto(m, c.junk[:m.size])
}

func (c *msgConn) payloadInto(m *Msg, b []byte) error {
	if err := c.readFull(b, m); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return &FramingError{Req: m.Req, Field: "payload", Reason: fmt.Sprintf("connection closed inside a %d-byte payload", m.size)}
		}
		return err
	}
	return nil
}

// reply sends a reply to req with the given payload.
func (c *msgConn) reply(req Request, payload []byte) error {
	b := make([]byte, headerSize+len(payload))
	le.PutUint32(b[0:], uint32(req))
	le.PutUint32(b[4:], flagVersion|FlagReply)
	le.PutUint32(b[8:], uint32(len(payload)))
	copy(b[headerSize:], payload)
	_, err := c.uc.Write(b)
	return err
}

func (c *msgConn) replyU64(req Request, v uint64) error {
	var b [8]byte
	le.PutUint64(b[:], v)
	return c.reply(req, b[:])
}
