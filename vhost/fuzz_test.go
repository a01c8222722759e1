package vhost_test

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// wire encodes one message as a front-end sends it.
func wire(req vhost.Request, flags uint32, payload []byte) []byte {
	b := make([]byte, 12+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(req))
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(payload)))
	copy(b[12:], payload)
	return b
}

// fuzzRegion is the memory every fuzz fd stands for: 1 MiB at GPA 0 and
// user address 1<<40.
const fuzzUA = 1 << 40

// fuzzSeeds are message sequences the unit tests send, as (bytes, fd mask)
// pairs: bit i of the mask attaches a memfd to message i, bit 32+i an
// eventfd.
func fuzzSeeds() []struct {
	b    []byte
	mask uint64
} {
	var seeds []struct {
		b    []byte
		mask uint64
	}
	add := func(mask uint64, msgs ...[]byte) {
		var b []byte
		for _, m := range msgs {
			b = append(b, m...)
		}
		seeds = append(seeds, struct {
			b    []byte
			mask uint64
		}{b, mask})
	}
	const v, nr = 1, 1 | vhost.FlagNeedReply
	negotiate := [][]byte{
		wire(vhost.ReqGetFeatures, v, nil),
		wire(vhost.ReqGetProtocolFeatures, v, nil),
		wire(vhost.ReqSetProtocolFeatures, v, u64(1<<vhost.ProtoReplyAck|1<<vhost.ProtoMQ|1<<vhost.ProtoStatus|1<<vhost.ProtoConfigureMemSlots|1<<vhost.ProtoConfig)),
		wire(vhost.ReqSetOwner, v, nil),
		wire(vhost.ReqSetFeatures, v, u64(testFeatures|1<<vhost.FeatProtocolFeatures)),
	}
	table := wire(vhost.ReqSetMemTable, nr, vhosttest.MemTable(vhosttest.RegionDesc{Size: 1 << 20, UserAddr: fuzzUA}))
	ring := [][]byte{
		wire(vhost.ReqSetVringNum, v, vstate(0, 256)),
		wire(vhost.ReqSetVringBase, v, vstate(0, 0)),
		wire(vhost.ReqSetVringAddr, nr, vhosttest.VringAddr(0, 0, fuzzUA, fuzzUA+0x2000, fuzzUA+0x1000, 0)),
		wire(vhost.ReqSetVringCall, v, u64(0)),
		wire(vhost.ReqSetVringKick, v, u64(0)),
	}
	all := append(append(append([][]byte{}, negotiate...), table), ring...)
	// negotiate (5), table (1 fd), ring with call and kick fds.
	add(1<<5|1<<(32+9)|1<<(32+10), all...)
	add(1<<5|1<<(32+9)|1<<(32+10), append(all,
		wire(vhost.ReqSetVringEnable, nr, vstate(0, 1)),
		wire(vhost.ReqGetVringBase, v, vstate(0, 0)),
		wire(vhost.ReqResetOwner, v, nil),
		wire(vhost.ReqGetConfig, v, configMsg(0, 8)))...)
	add(1<<5|1<<6, append(append([][]byte{}, negotiate...), table,
		wire(vhost.ReqAddMemReg, nr, vhosttest.MemReg(vhosttest.RegionDesc{GPA: 1 << 30, Size: 1 << 20, UserAddr: 2 << 40})),
		wire(vhost.ReqRemMemReg, nr, vhosttest.MemReg(vhosttest.RegionDesc{Size: 1 << 20, UserAddr: fuzzUA})))...)
	// Bad ones from the bad-input tests.
	add(1, wire(vhost.ReqSetFeatures, nr, u64(0)))
	add(0, wire(vhost.ReqSetVringNum, nr, vstate(testVrings, 256)))
	add(0, wire(vhost.Request(99), nr, []byte{1, 2, 3}))
	add(0, wire(vhost.ReqSetFeatures, 0, u64(0)))
	add(0, wire(vhost.ReqSetMemTable, nr, vhosttest.MemTable()))
	add(0, []byte{1, 0, 0, 0, 1})
	add(0, wire(vhost.ReqSetVringKick, nr, u64(0x1ff)))
	return seeds
}

// FuzzSession feeds bytes, cut into messages at the sizes their headers
// declare, through a socketpair into a session with a NullDevice; bit i of
// fdmask attaches a 1 MiB memfd to message i and bit 32+i an eventfd (i < 32). Invariants: no panic, the session ends when the
// front-end closes, and every fd and mapping it was given is released.
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.b, s.mask)
	}
	name := uniqueName("fuzz")
	f.Fuzz(func(t *testing.T, data []byte, fdmask uint64) {
		before := privtest.OpenFds()
		dev := vhosttest.NewNullDevice(testFeatures, testVrings)
		srv := vhost.NewServer(dev, hclog.NewNullLogger())
		fe, be, err := vhosttest.Pair()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			srv.ServeConn(context.Background(), be)
			close(done)
		}()
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, fe.Conn())
			close(drained)
		}()
		if err := feed(fe, name, data, fdmask); err != nil {
			t.Fatal(err)
		}
		fe.Conn().CloseWrite()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the session did not end after the front-end stopped writing")
		}
		<-drained
		fe.Close()
		srv.Close()
		if n := vhosttest.MapsCount(name); n != 0 {
			t.Fatalf("%d mappings left", n)
		}
		if after := privtest.OpenFds(); after != before {
			t.Fatalf("fds: %d before, %d after", before, after)
		}
	})
}

// feed cuts data into messages at the sizes their headers declare (the
// last one may be cut short) and sends them; bit i of fdmask attaches a
// 1 MiB memfd called name to message i, bit 32+i an eventfd (what KICK,
// CALL and ERR take; other kinds: TestBadInput56). It stops quietly
// when the back-end has closed the connection.
func feed(fe *vhosttest.FrontEnd, name string, data []byte, fdmask uint64) error {
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if n >= 12 {
			if size := uint64(binary.LittleEndian.Uint32(data[8:])); size+12 < uint64(n) {
				n = int(size) + 12
			}
		}
		var fds []int
		if i < 32 && fdmask&(1<<i) != 0 {
			fd, err := vhosttest.NewMemfd(name, 1<<20)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		if i < 32 && fdmask&(1<<(32+i)) != 0 {
			fd, err := vhosttest.NewEventfd()
			if err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		err := fe.SendBytes(data[:n], fds)
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err != nil {
			return nil // the server closed the connection
		}
		data = data[n:]
	}
	return nil
}

// TestFuzzSeeds keeps FuzzSession's seed corpus meaningful: the first two
// seeds are a well-formed start that gets ring 0 running, every REPLY_ACK
// a success.
func TestFuzzSeeds(t *testing.T) {
	for i, s := range fuzzSeeds()[:2] {
		h := newHarness(t)
		if err := feed(h.fe, h.fe.Name, s.b, s.mask); err != nil {
			t.Fatal(err)
		}
		if err := h.fe.Send(vhost.ReqGetFeatures, 0, nil); err != nil {
			t.Fatal(err)
		}
		// The seed's own GET_FEATURES is answered first, ours last.
		for gets := 0; gets < 2; {
			r, err := h.fe.ReadReply()
			if err != nil {
				t.Fatal(err)
			}
			switch r.Req {
			case vhost.ReqGetFeatures:
				gets++
			case vhost.ReqSetMemTable, vhost.ReqSetVringAddr, vhost.ReqSetVringEnable, vhost.ReqAddMemReg, vhost.ReqRemMemReg:
				if v, err := r.U64(); err != nil || v != 0 {
					t.Fatalf("seed %d: %v refused", i, r.Req)
				}
			}
		}
		st := h.state()
		if i == 0 && (st.Regions != 1 || st.Acked == 0 || len(st.Running) != 1) {
			t.Fatalf("seed %d did not get a ring running: %+v", i, st)
		}
		if i == 1 && (st.Regions != 1 || st.Resets != 1) {
			t.Fatalf("seed %d did not get to RESET_OWNER: %+v", i, st)
		}
		if h.logs.hasLine("rejected") {
			t.Fatalf("seed had messages rejected:\n%s", h.logs.String())
		}
	}
}

// configMsg is a GET_CONFIG payload for size bytes at offset.
func configMsg(offset, size uint32) []byte {
	b := make([]byte, 12+size)
	binary.LittleEndian.PutUint32(b, offset)
	binary.LittleEndian.PutUint32(b[4:], size)
	return b
}
