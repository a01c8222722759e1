package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// action is one step of a cycle.
type action struct {
	name string
	do   func(in *inst) error
}

var actions = []action{
	{"reconnect", (*inst).reconnect},
	{"stop/cont", (*inst).stopCont},
	{"memtable", (*inst).memTable},
	{"dirtylog", (*inst).dirtyLog},
	{"malformed", (*inst).malformed},
}

// stopRings does what QEMU does on `stop`: GET_VRING_BASE on every ring.
// It checks the ring-state invariant: each ring's used index, in guest
// memory, equals the base returned.
func (in *inst) stopRings() ([2]uint16, error) {
	var bases [2]uint16
	for i, r := range []*ring{in.rx, in.tx} {
		b, err := in.fe.GetVringBase(i)
		if err != nil {
			return bases, fmt.Errorf("GET_VRING_BASE %d: %w", i, err)
		}
		if u := r.usedIdx(); u != b {
			return bases, fmt.Errorf("ring %d stopped at base %d but its used index is %d", i, b, u)
		}
		bases[i] = b
	}
	return bases, nil
}

// startRings does what QEMU does on `cont`: each ring set up again from
// the base GET_VRING_BASE returned, then enabled.
func (in *inst) startRings(bases [2]uint16) error {
	f := in.fe
	for i, b := range bases {
		// QEMU's order; SET_VRING_KICK starts the ring.
		err := f.SetVringNum(i, ringSize)
		if err == nil {
			err = f.SetVringBase(i, uint32(b))
		}
		if err == nil {
			err = f.SetVringAddr(i)
		}
		if err == nil {
			err = f.SetVringCall(i)
		}
		if err == nil {
			err = f.SetVringErr(i)
		}
		if err == nil {
			err = f.SetVringKick(i)
		}
		if err != nil {
			return fmt.Errorf("restarting ring %d from %d: %w", i, b, err)
		}
	}
	for i := range bases {
		if err := f.Enable(i, true); err != nil {
			return err
		}
	}
	return nil
}

func (in *inst) stopCont() error {
	bases, err := in.stopRings()
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(in.rng.IntN(200)) * time.Millisecond) // stopped, traffic still offered
	return in.startRings(bases)
}

// memTable changes the memory table the three ways QEMU does it, in turn:
// ADD_MEM_REG then REM_MEM_REG of a second region with the rings running;
// a new SET_MEM_TABLE with a second region and back, rings running; the
// same with the rings stopped around each table.
func (in *inst) memTable() error {
	f := in.fe
	in.memVariant++
	switch in.memVariant % 3 {
	case 0:
		r, err := f.AddMemReg(vhosttest.Layout{GPA: 1 << 30, Size: 1 << 20})
		if err != nil {
			return fmt.Errorf("ADD_MEM_REG: %w", err)
		}
		if err := in.waitFlow("ADD_MEM_REG", 16); err != nil {
			return err
		}
		if err := f.RemMemReg(r); err != nil {
			return fmt.Errorf("REM_MEM_REG: %w", err)
		}
		return nil
	case 1:
		return in.tableRoundTrip(false)
	default:
		return in.tableRoundTrip(true)
	}
}

// tableRoundTrip sends SET_MEM_TABLE {main, extra}, lets traffic run, then
// SET_MEM_TABLE {main}; with stopped, the rings are stopped around each.
func (in *inst) tableRoundTrip(stopped bool) error {
	f := in.fe
	main := f.Regions()[0]
	extra, err := f.NewRegion(vhosttest.Layout{GPA: 1 << 30, Size: 2 << 20})
	if err != nil {
		return err
	}
	defer func() { unix.Munmap(extra.Mem); unix.Close(extra.Fd) }()
	tables := []struct {
		regs []*vhosttest.Region
	}{{[]*vhosttest.Region{main, extra}}, {[]*vhosttest.Region{main}}}
	for k, t := range tables {
		var bases [2]uint16
		if stopped {
			if bases, err = in.stopRings(); err != nil {
				return err
			}
		}
		var descs []vhosttest.RegionDesc
		var fds []int
		for _, r := range t.regs {
			descs, fds = append(descs, r.Desc()), append(fds, r.Fd)
		}
		if err := f.Request(vhost.ReqSetMemTable, vhosttest.MemTable(descs...), fds...); err != nil {
			return fmt.Errorf("SET_MEM_TABLE of %d regions (rings stopped: %v): %w", len(descs), stopped, err)
		}
		if stopped {
			if err := in.startRings(bases); err != nil {
				return err
			}
		}
		if k == 0 {
			if err := in.waitFlow("SET_MEM_TABLE", 16); err != nil {
				return err
			}
		}
	}
	return nil
}

// dirtyLog turns dirty logging on as QEMU does when a migration starts,
// checks that traffic marks pages, and turns it off as a cancelled
// migration does (SET_FEATURES without LOG_ALL, SET_VRING_ADDR without
// the log flag).
func (in *inst) dirtyLog() error {
	f := in.fe
	lg, err := f.StartDirtyLog()
	if err != nil {
		return fmt.Errorf("dirty log on: %w", err)
	}
	defer lg.Close()
	if err := in.waitFlow("dirty log on", 32); err != nil {
		return err
	}
	marked := 0
	for _, b := range lg.Bits {
		if b != 0 {
			marked++
		}
	}
	if err := f.SetFeatures(f.Features &^ (1 << vhost.FeatLogAll)); err != nil {
		return fmt.Errorf("dirty log off: %w", err)
	}
	for i := range 2 {
		if err := f.SetVringAddr(i); err != nil {
			return fmt.Errorf("dirty log off: %w", err)
		}
	}
	if marked == 0 {
		return errors.New("dirty log on, frames moved both ways, but no page was marked")
	}
	return nil
}

// badMsg is one malformed message and what vhostd must do with it.
type badMsg struct {
	name   string
	h      vhosttest.Header
	p      []byte
	fds    []int
	closes bool // the session must close (no failure reply exists)
}

func (in *inst) badMsgs() []badMsg {
	need := uint32(vhosttest.FlagVersion | vhosttest.FlagNeedReply)
	hdr := func(r vhost.Request, p []byte) vhosttest.Header {
		return vhosttest.Header{Req: uint32(r), Flags: need, Size: uint32(len(p))}
	}
	m := func(name string, r vhost.Request, p []byte, fds ...int) badMsg {
		return badMsg{name: name, h: hdr(r, p), p: p, fds: fds}
	}
	ev, mf := in.probeEvent, in.probeMemfd
	tenFds := []int{ev, ev, ev, ev, ev, ev, ev, ev, ev, ev}
	far := func(gpa, ua uint64) vhosttest.RegionDesc {
		return vhosttest.RegionDesc{GPA: gpa, Size: 1 << 20, UserAddr: ua}
	}
	return []badMsg{
		m("SET_VRING_NUM of 5 bytes", vhost.ReqSetVringNum, make([]byte, 5)),
		m("SET_VRING_NUM index 200", vhost.ReqSetVringNum, vhosttest.VringState(200, ringSize)),
		m("SET_VRING_NUM 3", vhost.ReqSetVringNum, vhosttest.VringState(0, 3)),
		m("SET_VRING_BASE on a running ring", vhost.ReqSetVringBase, vhosttest.VringState(1, 5)),
		m("SET_VRING_CALL with a memfd", vhost.ReqSetVringCall, vhosttest.U64(0), mf),
		m("SET_VRING_KICK index 200", vhost.ReqSetVringKick, vhosttest.U64(200), ev),
		m("SET_VRING_CALL with 10 fds", vhost.ReqSetVringCall, vhosttest.U64(1), tenFds...),
		m("SET_FEATURES with fds", vhost.ReqSetFeatures, vhosttest.U64(in.fe.Features), ev, ev),
		m("SET_MEM_TABLE overlapping", vhost.ReqSetMemTable, vhosttest.MemTable(far(0, 1<<40), far(4096, 2<<40)), mf, mf),
		m("SET_MEM_TABLE past the fd", vhost.ReqSetMemTable,
			vhosttest.MemTable(vhosttest.RegionDesc{Size: 64 << 20, UserAddr: 1 << 40}), mf),
		m("SET_MEM_TABLE on an eventfd", vhost.ReqSetMemTable, vhosttest.MemTable(far(0, 1<<40)), ev),
		m("ADD_MEM_REG without an fd", vhost.ReqAddMemReg, vhosttest.MemReg(far(2<<30, 3<<40))),
		m("REM_MEM_REG of a missing region", vhost.ReqRemMemReg, vhosttest.MemReg(far(3<<30, 4<<40))),
		{name: "request 999", h: vhosttest.Header{Req: 999, Flags: need, Size: 16}, p: make([]byte, 16), fds: []int{ev}},
		{name: "header version 2", h: vhosttest.Header{Req: uint32(vhost.ReqSetFeatures), Flags: 2, Size: 8}, p: make([]byte, 8), closes: true},
		{name: "GET_FEATURES with a payload", h: hdr(vhost.ReqGetFeatures, make([]byte, 8)), p: make([]byte, 8), closes: true},
	}
}

// malformed sends the malformed messages in a random order: each is
// refused (a failure REPLY_ACK), or closes the session when it has no
// failure answer, after which the session is re-established. The session
// must still answer afterwards.
func (in *inst) malformed() error {
	msgs := in.badMsgs()
	in.rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	for _, b := range msgs {
		f := in.fe
		if err := f.SendRaw(b.h, b.p, b.fds); err != nil {
			return fmt.Errorf("%s: sending: %w", b.name, err)
		}
		if b.closes {
			if err := f.WaitClosed(5 * time.Second); err != nil {
				return fmt.Errorf("%s: want the connection closed: %w", b.name, err)
			}
			in.count("malformed-close")
			if err := in.reconnect(); err != nil {
				return fmt.Errorf("%s: reconnecting: %w", b.name, err)
			}
			continue
		}
		r, err := f.ReadReply()
		if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
			return fmt.Errorf("%s: connection closed, want a failure reply", b.name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		if v, err := r.U64(); err != nil || v == 0 || uint32(r.Req) != b.h.Req {
			return fmt.Errorf("%s: reply %v %x, want a failure REPLY_ACK", b.name, r.Req, r.Payload)
		}
	}
	return in.fe.Sync()
}
