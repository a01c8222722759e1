package vhost_test

// The per-message fd cap (issue 15, framing): one message read in many
// small pieces, each with fds, holds at most the protocol maximum of 8 fds
// at any time; the rest are closed as they arrive and the message is
// refused once it is whole.

import (
	"encoding/binary"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// unsent is how many bytes the front-end's socket has sent that the
// back-end has not read yet (SIOCOUTQ: a unix socket's skbs stay charged
// to the sender until the receiver consumes them).
func unsent(t *testing.T, fe *vhosttest.FrontEnd) int {
	t.Helper()
	rc, err := fe.Conn().SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBadInput55FdCapPerMessage(t *testing.T) {
	const perPiece = 16 // as many as one control message can bring whole
	h := newHarness(t)
	h.negotiate()
	p := pipeProbe(t)
	fds := make([]int, perPiece)
	for i := range fds {
		fds[i] = p.Fd
	}
	before := h.state()
	start := privtest.OpenFds()
	msg := make([]byte, vhosttest.HeaderSize)
	payload := vhosttest.MemTable(vhosttest.RegionDesc{Size: 1 << 20, UserAddr: 1 << 40})
	binary.LittleEndian.PutUint32(msg[0:], uint32(vhost.ReqSetMemTable))
	binary.LittleEndian.PutUint32(msg[4:], vhosttest.FlagVersion|vhosttest.FlagNeedReply)
	binary.LittleEndian.PutUint32(msg[8:], uint32(len(payload)))
	msg = append(msg, payload...)
	// The header with one fd (fine for SET_MEM_TABLE), then the payload a
	// byte at a time with 16 fds each, all but its last byte.
	if err := h.fe.SendBytes(msg[:vhosttest.HeaderSize], fds[:1]); err != nil {
		t.Fatal(err)
	}
	for i := vhosttest.HeaderSize; i < len(msg)-1; i++ {
		if err := h.fe.SendBytes(msg[i:i+1], fds); err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
	}
	sent := 1 + perPiece*(len(msg)-1-vhosttest.HeaderSize)
	if !waitFor(2e9, func() bool { return unsent(t, h.fe) == 0 }) {
		t.Fatalf("the back-end did not read the pieces: %d bytes unread", unsent(t, h.fe))
	}
	if held := privtest.OpenFds() - start; held > 8 {
		t.Fatalf("the back-end holds %d fds of one unfinished message (%d sent), want at most 8", held, sent)
	}
	// The last byte completes the message: refused, every fd closed.
	if err := h.fe.SendBytes(msg[len(msg)-1:], nil); err != nil {
		t.Fatal(err)
	}
	r, err := h.fe.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.U64(); err != nil || v == 0 {
		t.Fatalf("SET_MEM_TABLE with %d fds acked", sent)
	}
	h.logged(vhost.ReqSetMemTable, "fds")
	if n := privtest.OpenFds(); n != start {
		t.Fatalf("%d fds open after the refusal, %d before", n, start)
	}
	p.closedByPeer()
	h.unchanged(before)
	h.alive()
}
