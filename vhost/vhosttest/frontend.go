package vhosttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/vhostd/vhostd/vhost"
	"golang.org/x/sys/unix"
)

var le = binary.LittleEndian

// Header flag bits (vhost-user.rst, "Header").
const (
	FlagVersion   = 0x1
	FlagReply     = vhost.FlagReply
	FlagNeedReply = vhost.FlagNeedReply
)

// HeaderSize is the size of the vhost-user message header.
const HeaderSize = 12

// Header is a message header as sent on the wire; SendRaw writes it
// verbatim, so Size may disagree with the payload.
type Header struct {
	Req   uint32
	Flags uint32
	Size  uint32
}

// Reply is one message read from the back-end.
type Reply struct {
	Req     vhost.Request
	Flags   uint32
	Payload []byte
}

// U64 returns the reply's payload as a u64 (REPLY_ACK and GET_* answers).
func (r Reply) U64() (uint64, error) {
	if len(r.Payload) != 8 {
		return 0, fmt.Errorf("%v reply: %d-byte payload, want 8", r.Req, len(r.Payload))
	}
	return le.Uint64(r.Payload), nil
}

// ErrNack is returned when the back-end answers REPLY_ACK with a non-zero
// value.
var ErrNack = errors.New("back-end replied with failure")

// FrontEnd is one vhost-user front-end connection and the guest it plays.
type FrontEnd struct {
	conn *net.UnixConn

	// Timeout bounds every reply wait (default 5 s).
	Timeout time.Duration
	// Name prefixes the memfds this front-end creates ("vhosttest" by
	// default); MapsCount(Name) finds their mappings.
	Name string
	// Slab is the per-descriptor buffer slab of rings laid out by
	// LayoutRing (default 2048 bytes).
	Slab uint64

	// Offered and OfferedProto are the back-end's answers to the last
	// GET_FEATURES and GET_PROTOCOL_FEATURES; Features and Proto what
	// Negotiate acked.
	Offered, OfferedProto uint64
	Features, Proto       uint64
	// Packed lets Negotiate ack VIRTIO_F_RING_PACKED when offered; rings
	// laid out after that are packed (Ring.Packed). Off by default: most
	// tests drive split rings through Ring.Driver.
	Packed bool

	regions []*Region
	rings   map[int]*Ring
	closed  bool
}

// New wraps a connected socket.
func New(uc *net.UnixConn) *FrontEnd {
	return &FrontEnd{conn: uc, Timeout: 5 * time.Second, Name: "vhosttest", Slab: 2048, rings: map[int]*Ring{}}
}

// Dial connects to a back-end listening at path.
func Dial(path string) (*FrontEnd, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// Pair returns a front-end on one end of a fresh socketpair and the other
// end, for the back-end (vhost.Server.ServeConn).
func Pair() (*FrontEnd, *net.UnixConn, error) {
	a, b, err := SocketPair()
	if err != nil {
		return nil, nil, err
	}
	return New(a), b, nil
}

// SocketPair returns both ends of a unix stream socketpair.
func SocketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	conv := func(fd int) (*net.UnixConn, error) {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	a, err := conv(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := conv(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// Conn returns the underlying socket.
func (f *FrontEnd) Conn() *net.UnixConn { return f.conn }

// SendBytes writes b in one sendmsg with fds attached (SCM_RIGHTS). The
// caller keeps its own copies of fds.
func (f *FrontEnd) SendBytes(b []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	f.conn.SetWriteDeadline(time.Now().Add(f.timeout()))
	n, oobn, err := f.conn.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return err
	}
	if n != len(b) || oobn != len(oob) {
		return fmt.Errorf("short write: %d/%d bytes, %d/%d oob", n, len(b), oobn, len(oob))
	}
	return nil
}

// SendRaw writes h verbatim followed by payload, with fds.
func (f *FrontEnd) SendRaw(h Header, payload []byte, fds []int) error {
	b := make([]byte, HeaderSize+len(payload))
	le.PutUint32(b[0:], h.Req)
	le.PutUint32(b[4:], h.Flags)
	le.PutUint32(b[8:], h.Size)
	copy(b[HeaderSize:], payload)
	return f.SendBytes(b, fds)
}

// Send writes a well-formed request: version 1, the given extra flags
// (FlagNeedReply), the payload's real size.
func (f *FrontEnd) Send(req vhost.Request, flags uint32, payload []byte, fds ...int) error {
	return f.SendRaw(Header{Req: uint32(req), Flags: FlagVersion | flags, Size: uint32(len(payload))}, payload, fds)
}

func (f *FrontEnd) timeout() time.Duration {
	if f.Timeout <= 0 {
		return 5 * time.Second
	}
	return f.Timeout
}

// ReadReply reads one message from the back-end. It returns io.EOF when
// the back-end closed the connection.
func (f *FrontEnd) ReadReply() (Reply, error) {
	f.conn.SetReadDeadline(time.Now().Add(f.timeout()))
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(f.conn, hdr[:]); err != nil {
		return Reply{}, err
	}
	r := Reply{Req: vhost.Request(le.Uint32(hdr[0:])), Flags: le.Uint32(hdr[4:])}
	size := le.Uint32(hdr[8:])
	if size > 0x1000 {
		return r, fmt.Errorf("%v reply: size %d", r.Req, size)
	}
	r.Payload = make([]byte, size)
	if _, err := io.ReadFull(f.conn, r.Payload); err != nil {
		return r, err
	}
	return r, nil
}

// WaitClosed waits until the back-end closes the connection, discarding
// anything it sends first.
func (f *FrontEnd) WaitClosed(timeout time.Duration) error {
	f.conn.SetReadDeadline(time.Now().Add(timeout))
	var b [256]byte
	for {
		_, err := f.conn.Read(b[:])
		if err == io.EOF || errors.Is(err, unix.ECONNRESET) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Call sends req and reads its reply, which must answer req.
func (f *FrontEnd) Call(req vhost.Request, flags uint32, payload []byte, fds ...int) (Reply, error) {
	if err := f.Send(req, flags, payload, fds...); err != nil {
		return Reply{}, err
	}
	r, err := f.ReadReply()
	if err != nil {
		return r, fmt.Errorf("%v: reading reply: %w", req, err)
	}
	if r.Req != req {
		return r, fmt.Errorf("%v: reply is for %v", req, r.Req)
	}
	if r.Flags != FlagVersion|FlagReply {
		return r, fmt.Errorf("%v: reply flags %#x", req, r.Flags)
	}
	return r, nil
}

// Ack sends req with NEED_REPLY and returns the REPLY_ACK value (0 is
// success).
func (f *FrontEnd) Ack(req vhost.Request, payload []byte, fds ...int) (uint64, error) {
	r, err := f.Call(req, FlagNeedReply, payload, fds...)
	if err != nil {
		return 0, err
	}
	return r.U64()
}

// Request sends req with NEED_REPLY and fails unless the back-end acks 0.
func (f *FrontEnd) Request(req vhost.Request, payload []byte, fds ...int) error {
	v, err := f.Ack(req, payload, fds...)
	if err != nil {
		return err
	}
	if v != 0 {
		return fmt.Errorf("%v: %w (%d)", req, ErrNack, v)
	}
	return nil
}

// GetU64 sends a GET_* request without payload and returns the u64 answer.
func (f *FrontEnd) GetU64(req vhost.Request) (uint64, error) {
	r, err := f.Call(req, 0, nil)
	if err != nil {
		return 0, err
	}
	return r.U64()
}

// U64 encodes v as an 8-byte payload.
func U64(v uint64) []byte {
	b := make([]byte, 8)
	le.PutUint64(b, v)
	return b
}

// VringState encodes a vhost_vring_state payload {index, num}.
func VringState(index, num uint32) []byte {
	b := make([]byte, 8)
	le.PutUint32(b, index)
	le.PutUint32(b[4:], num)
	return b
}

// VringAddr encodes a vhost_vring_addr payload (vhost-user.rst "Vring
// address description"); the addresses are front-end virtual addresses.
func VringAddr(index, flags uint32, desc, used, avail, log uint64) []byte {
	b := make([]byte, 40)
	le.PutUint32(b, index)
	le.PutUint32(b[4:], flags)
	le.PutUint64(b[8:], desc)
	le.PutUint64(b[16:], used)
	le.PutUint64(b[24:], avail)
	le.PutUint64(b[32:], log)
	return b
}

// RegionDesc is one memory region as SET_MEM_TABLE and ADD_MEM_REG
// describe it.
type RegionDesc struct {
	GPA, Size, UserAddr, MmapOffset uint64
}

func (r RegionDesc) put(b []byte) {
	le.PutUint64(b, r.GPA)
	le.PutUint64(b[8:], r.Size)
	le.PutUint64(b[16:], r.UserAddr)
	le.PutUint64(b[24:], r.MmapOffset)
}

// MemTable encodes a SET_MEM_TABLE payload (8 + 32·n bytes).
func MemTable(rs ...RegionDesc) []byte {
	b := make([]byte, 8+32*len(rs))
	le.PutUint32(b, uint32(len(rs)))
	for i, r := range rs {
		r.put(b[8+32*i:])
	}
	return b
}

// MemReg encodes an ADD_MEM_REG / REM_MEM_REG payload (8 bytes of padding,
// then one region).
func MemReg(r RegionDesc) []byte {
	b := make([]byte, 40)
	r.put(b[8:])
	return b
}

// Close closes the connection and releases the guest memory, rings and
// eventfds. It is safe to call more than once.
func (f *FrontEnd) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.conn.Close()
	for _, r := range f.rings {
		r.close()
	}
	f.rings = map[int]*Ring{}
	for _, r := range f.regions {
		r.close()
	}
	f.regions = nil
	return err
}
