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

// Msg is one request read from the front-end. Payload is exactly Size bytes.
// Fds are the descriptors that arrived with it, owned by whoever holds the
// Msg: every path either keeps each fd or closes it.
type Msg struct {
	Req     Request
	Flags   uint32
	Payload []byte
	Fds     []int
	// Truncated is set when the kernel reported MSG_CTRUNC: more fds were
	// sent than fit (the ones that did not fit are already closed).
	Truncated bool
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

// errFraming is returned for faults that leave the byte stream unusable:
// the connection must be closed.
var errFraming = errors.New("framing")

// FramingError describes a fault in the message header or stream; after one
// the connection cannot be trusted and is closed.
type FramingError struct {
	Req    Request
	Field  string
	Reason string
}

func (e *FramingError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Req, e.Field, e.Reason)
}

func (e *FramingError) Unwrap() error { return errFraming }

// msgConn reads and writes vhost-user messages on a unix stream socket.
type msgConn struct {
	uc  *net.UnixConn
	oob []byte
}

func newMsgConn(uc *net.UnixConn) *msgConn {
	// Room for twice the legitimate maximum, so a message carrying more
	// than maxFds is seen whole and rejected rather than truncated.
	return &msgConn{uc: uc, oob: make([]byte, unix.CmsgSpace(2*maxFds*4))}
}

// readFull reads len(b) bytes, collecting any fds that arrive on the way
// into *fds. io.EOF is returned only when nothing at all was read.
func (c *msgConn) readFull(b []byte, fds *[]int, trunc *bool) error {
	got := 0
	for got < len(b) {
		n, oobn, flags, _, err := c.uc.ReadMsgUnix(b[got:], c.oob)
		if oobn > 0 {
			*fds = append(*fds, parseRights(c.oob[:oobn])...)
		}
		if flags&unix.MSG_CTRUNC != 0 {
			*trunc = true
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

// read reads one message. On a framing fault (BAD-INPUTS 1, 2, 4) it
// returns a *FramingError; on EOF io.EOF. Fds received with a message that
// fails are closed before read returns.
func (c *msgConn) read() (*Msg, error) {
	var hdr [headerSize]byte
	m := &Msg{}
	if err := c.readFull(hdr[:], &m.Fds, &m.Truncated); err != nil {
		m.closeFds()
		if err == io.ErrUnexpectedEOF {
			return nil, &FramingError{Field: "header", Reason: "connection closed inside the 12-byte header"}
		}
		return nil, err
	}
	m.Req = Request(le.Uint32(hdr[0:]))
	m.Flags = le.Uint32(hdr[4:])
	size := le.Uint32(hdr[8:])
	if size > maxPayload {
		m.closeFds()
		return nil, &FramingError{Req: m.Req, Field: "size", Reason: fmt.Sprintf("%d exceeds the %d-byte limit", size, maxPayload)}
	}
	if v := m.Flags & flagVersionMask; v != flagVersion {
		m.closeFds()
		return nil, &FramingError{Req: m.Req, Field: "flags", Reason: fmt.Sprintf("version %d, want 1", v)}
	}
	if m.Flags&FlagReply != 0 {
		m.closeFds()
		return nil, &FramingError{Req: m.Req, Field: "flags", Reason: "reply bit set on a request"}
	}
	if m.Flags&^uint32(flagKnownMask) != 0 {
		m.closeFds()
		return nil, &FramingError{Req: m.Req, Field: "flags", Reason: fmt.Sprintf("reserved bits %#x set", m.Flags&^uint32(flagKnownMask))}
	}
	m.Payload = make([]byte, size)
	if err := c.readFull(m.Payload, &m.Fds, &m.Truncated); err != nil {
		m.closeFds()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, &FramingError{Req: m.Req, Field: "payload", Reason: fmt.Sprintf("connection closed inside a %d-byte payload", size)}
		}
		return nil, err
	}
	return m, nil
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
