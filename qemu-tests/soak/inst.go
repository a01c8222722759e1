package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

const (
	ringSize = 256
	slab     = 2048
	memSize  = 4 << 20
	// features: VERSION_1 and MRG_RXBUF (15); no EVENT_IDX, so kicks follow
	// NO_NOTIFY and the guest asks for no interrupts.
	features = 1<<vhost.FeatVersion1 | 1<<15
	proto    = 1<<vhost.ProtoReplyAck | 1<<vhost.ProtoLogShmfd | 1<<vhost.ProtoConfigureMemSlots
)

var bcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

type counters struct {
	g2hSent, g2hRecv, h2gSent, h2gRecv, h2gSendErr atomic.Uint64
	bad, reorder                                   atomic.Uint64
}

// inst is one vhostd process, its TAP, and the front-end and host traffic
// that drive it.
type inst struct {
	mode, tap, sock, logPath, memName string
	cfg                               *config
	rng                               *rand.Rand
	cmd                               *exec.Cmd
	ln                                *net.UnixListener // --client mode: this side listens
	hostMAC                           [6]byte
	probeMemfd, probeEvent            int

	mu         sync.Mutex // the rings, for the guest goroutine
	fe         *vhosttest.FrontEnd
	rx, tx     *ring
	g2hSeq     uint64 // guest goroutine only
	memVariant int    // control goroutine only
	h2gSeq     uint64

	c    counters
	stop chan struct{}
	wg   sync.WaitGroup

	fmu     sync.Mutex
	failure error
	st      stats
}

func (in *inst) setFail(err error) {
	in.fmu.Lock()
	if in.failure == nil {
		in.failure = err
	}
	in.fmu.Unlock()
}

func (in *inst) failed() error {
	in.fmu.Lock()
	defer in.fmu.Unlock()
	return in.failure
}

// startVhostd runs vhostd on a fresh TAP and waits for the TAP.
func (in *inst) startVhostd() error {
	args := []string{"--socket-path", in.sock, "--tap", in.tap, "--busy-poll", "0", "--log-level", "warn"}
	if in.mode == "client" {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: in.sock, Net: "unix"})
		if err != nil {
			return err
		}
		in.ln = ln
		args = append(args, "--client", "--reconnect", "100ms")
	}
	lf, err := os.Create(in.logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	in.cmd = exec.Command(in.cfg.vhostd, args...)
	in.cmd.Stdout, in.cmd.Stderr = lf, lf
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := in.cmd.Start(); err != nil {
		return fmt.Errorf("starting vhostd: %w", err)
	}
	for i := 0; ; i++ {
		ifc, err := net.InterfaceByName(in.tap)
		if err == nil && len(ifc.HardwareAddr) == 6 {
			copy(in.hostMAC[:], ifc.HardwareAddr)
			return in.startHost(ifc.Index)
		}
		if i > 200 {
			return fmt.Errorf("TAP %s did not appear: %v", in.tap, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *inst) startHost(ifindex int) error {
	tx, err := packetSocket(ifindex, 0)
	if err != nil {
		return err
	}
	rx, err := packetSocket(ifindex, typeG2H)
	if err != nil {
		return err
	}
	in.wg.Add(3)
	go func() { defer in.wg.Done(); in.hostSend(tx) }()
	go func() { defer in.wg.Done(); in.hostRecv(rx) }()
	go func() { defer in.wg.Done(); in.guestLoop() }()
	return nil
}

// stopAll ends the traffic, the session and vhostd (SIGTERM, then SIGKILL).
func (in *inst) stopAll() error {
	close(in.stop)
	in.wg.Wait()
	in.disconnect()
	if in.ln != nil {
		in.ln.Close()
	}
	if in.cmd == nil || in.cmd.Process == nil {
		return nil
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("vhostd exited: %w", err)
		}
		return nil
	case <-time.After(10 * time.Second):
		in.cmd.Process.Kill()
		<-done
		return fmt.Errorf("vhostd did not stop within 10 s of SIGTERM")
	}
}

func (in *inst) pid() int { return in.cmd.Process.Pid }

// connect opens a session (dials vhostd, or accepts its connection in
// --client mode), runs QEMU's start sequence and posts every RX buffer.
func (in *inst) connect() error {
	f, err := in.open()
	if err != nil {
		return err
	}
	f.Timeout, f.Name, f.Slab = 20*time.Second, in.memName, slab
	if err := f.Start(features, proto, 2, ringSize, vhosttest.Layout{Size: memSize}); err != nil {
		f.Close()
		return fmt.Errorf("start: %w", err)
	}
	if f.Proto != proto {
		f.Close()
		return fmt.Errorf("protocol features %#x negotiated, want %#x", f.Proto, uint64(proto))
	}
	reg := f.Regions()[0]
	rx, tx := newRing(reg, f.Ring(0)), newRing(reg, f.Ring(1))
	for i := uint16(0); i < rx.size; i++ {
		rx.setDesc(i, slab, true)
		rx.put(i)
	}
	rx.publish()
	in.mu.Lock()
	in.fe, in.rx, in.tx = f, rx, tx
	in.mu.Unlock()
	return nil
}

func (in *inst) open() (*vhosttest.FrontEnd, error) {
	if in.ln != nil {
		in.ln.SetDeadline(time.Now().Add(20 * time.Second))
		uc, err := in.ln.AcceptUnix()
		if err != nil {
			return nil, fmt.Errorf("waiting for vhostd --client to connect: %w", err)
		}
		return vhosttest.New(uc), nil
	}
	for i := 0; ; i++ {
		f, err := vhosttest.Dial(in.sock)
		if err == nil {
			return f, nil
		}
		if i > 200 {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// disconnect stops the guest's ring work and closes the session (the
// guest memory is unmapped only after the guest goroutine let go of it).
func (in *inst) disconnect() {
	in.mu.Lock()
	f := in.fe
	in.fe, in.rx, in.tx = nil, nil, nil
	in.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

func (in *inst) reconnect() error {
	in.disconnect()
	return in.connect()
}

// guestLoop works both rings every tick: RX completions checked and
// handed back, TX completions reaped and up to batch new frames sent.
func (in *inst) guestLoop() {
	in.every(in.cfg.tick, func() bool {
		in.mu.Lock()
		if in.rx != nil {
			in.rxStep()
			in.txStep()
		}
		in.mu.Unlock()
		return true
	})
}

// every calls fn every period until stop is closed or fn returns false.
func (in *inst) every(period time.Duration, fn func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-in.stop:
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}

func (in *inst) rxStep() {
	r := in.rx
	u := r.usedIdx()
	if u == r.lastUsed {
		return
	}
	for ; r.lastUsed != u; r.lastUsed++ {
		head, n := r.usedElem(r.lastUsed)
		if head >= r.size || uint64(n) > r.slab {
			in.setFail(fmt.Errorf("RX used entry %d: head %d, length %d", r.lastUsed, head, n))
			return
		}
		if n > hdrLen {
			seq, v := checkFrame(r.slabBuf(head)[hdrLen:n], typeH2G)
			switch v {
			case frameOK:
				if seq <= in.h2gSeq {
					in.c.reorder.Add(1)
					in.setFail(fmt.Errorf("host->guest frame %d after %d (duplicated or reordered)", seq, in.h2gSeq))
				}
				in.h2gSeq = seq
				in.c.h2gRecv.Add(1)
			case frameBad:
				in.c.bad.Add(1)
				in.setFail(fmt.Errorf("host->guest frame %d corrupt (%d bytes)", seq, n-hdrLen))
			}
		}
		r.put(head)
	}
	r.publish()
}

func (in *inst) txStep() {
	r := in.tx
	r.lastUsed = r.usedIdx()
	room := int(r.size - (r.availIdx - r.lastUsed))
	n := min(room, in.cfg.batch)
	for i := 0; i < n; i++ {
		head := r.availIdx & r.mask
		s := r.slabBuf(head)
		clear(s[:hdrLen])
		in.g2hSeq++
		l := buildFrame(s[hdrLen:], typeG2H, in.g2hSeq, guestMAC, bcast)
		r.setDesc(head, uint32(hdrLen+l), false)
		r.put(head)
	}
	if n > 0 {
		r.publish()
		in.c.g2hSent.Add(uint64(n))
	}
}

// waitFlow waits until at least n new frames arrived each way.
func (in *inst) waitFlow(after string, n uint64) error {
	g0, h0 := in.c.g2hRecv.Load(), in.c.h2gRecv.Load()
	deadline := time.Now().Add(in.cfg.stall)
	for time.Now().Before(deadline) {
		if err := in.failed(); err != nil {
			return err
		}
		g, h := in.c.g2hRecv.Load()-g0, in.c.h2gRecv.Load()-h0
		if g >= n && h >= n {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("traffic stalled after %s: in %v the host got %d guest frames, the guest %d host frames (want %d each)",
		after, in.cfg.stall, in.c.g2hRecv.Load()-g0, in.c.h2gRecv.Load()-h0, n)
}

func newInst(cfg *config, mode string, id int, dir, suffix string) *inst {
	return &inst{
		mode: mode, cfg: cfg,
		tap:     fmt.Sprintf("sk%d%s", id, suffix),
		sock:    filepath.Join(dir, fmt.Sprintf("vhost-%s.sock", mode)),
		logPath: filepath.Join(dir, fmt.Sprintf("vhostd-%s.log", mode)),
		memName: "soak-" + suffix,
		rng:     rand.New(rand.NewPCG(cfg.seed, uint64(id))),
		stop:    make(chan struct{}),
	}
}
