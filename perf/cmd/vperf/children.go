package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/perf/internal/fe"
	"github.com/vhostd/vhostd/perf/internal/frames"
	"github.com/vhostd/vhostd/perf/internal/rawtap"
	"github.com/vhostd/vhostd/xdptap"
)

// Report is the JSON line a child prints when it stops.
type Report struct {
	Frames, Bytes, Errors uint64 `json:",omitempty"`
	Kicks                 uint64 `json:",omitempty"`
	// Waits: rounds a cold raw loop waited for its partner thread.
	Waits             uint64         `json:",omitempty"`
	HostTSO, GuestTSO bool           `json:",omitempty"`
	Ping              *fe.PingResult `json:",omitempty"`
}

func emit(r Report) {
	json.NewEncoder(os.Stdout).Encode(r)
}

// stopOn returns a channel closed on SIGTERM/SIGINT or after d (0: never).
func stopOn(d time.Duration) chan struct{} {
	c := make(chan struct{})
	s := make(chan os.Signal, 1)
	signal.Notify(s, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		if d > 0 {
			select {
			case <-s:
			case <-time.After(d):
			}
		} else {
			<-s
		}
		close(c)
	}()
	return c
}

// frameFor returns the header and frame a loop sends for size (TSO for
// frames.TSOFrame when tso is allowed, else an MTU-sized frame).
func frameFor(size int, tso bool) ([frames.VnetHdrLen]byte, []byte) {
	if size >= frames.TSOFrame {
		if tso {
			return frames.TSO(frames.OtherMAC, frames.GuestMAC)
		}
		size = 1514
	}
	return [frames.VnetHdrLen]byte{}, frames.UDP(size, frames.OtherMAC, frames.GuestMAC)
}

func feMain(args []string) error {
	fs := flag.NewFlagSet("fe", flag.ContinueOnError)
	sock := fs.String("socket", "", "vhost-user socket of the back-end")
	mode := fs.String("mode", "tx", "tx, rx, ping or idle")
	size := fs.Int("size", 64, "frame size (65480: 64 KiB TSO)")
	dur := fs.Duration("duration", 0, "stop after this long (0: on SIGTERM)")
	dstMAC := fs.String("dst-mac", "", "ping: the TAP's MAC")
	src := fs.String("src", "", "ping: guest IPv4")
	injTap := fs.String("inject-tap", "", "rx: also be the traffic source, sending through this TAP (AF_PACKET) between ring polls")
	injGSO := fs.String("inject-udp-gso", "", "rx: the source sends 64 KiB UDP GSO datagrams to this address instead")
	injBatch := fs.Int("inject-batch", 32, "rx: frames the source sends per ring poll")
	dst := fs.String("dst", "", "ping: host IPv4 (on the TAP)")
	dirtyLog := fs.Bool("dirty-log", false, "turn dirty logging on after the start, as QEMU does for a live migration")
	touchFr := fs.Bool("touch", false, "tx: rewrite every cache line of a frame before publishing it (the guest side of the fair limit, raw-write-cold)")
	packed := fs.Bool("packed", false, "negotiate VIRTIO_F_RING_PACKED and drive packed rings (tx, rx, idle); fails when the back-end does not offer it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tso := *size >= frames.TSOFrame
	slab := uint64(2048)
	if tso {
		slab = (frames.TSOFrame + frames.VnetHdrLen + 4095) &^ 4095
	}
	if *packed && (*mode == "ping" || *dirtyLog) {
		return fmt.Errorf("--packed drives tx, rx and idle only")
	}
	c, err := fe.Dial(*sock, slab, tso, *packed)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Touch = *touchFr
	if *dirtyLog {
		l, err := c.F.StartDirtyLog()
		if err != nil {
			return fmt.Errorf("dirty log: %w", err)
		}
		defer l.Close()
	}
	stop := stopOn(*dur)
	var n fe.Counters
	rep := Report{HostTSO: c.HostTSO, GuestTSO: c.GuestTSO}
	switch *mode {
	case "tx":
		hdr, fr := frameFor(*size, c.HostTSO)
		c.TxLoop(hdr, fr, stop, &n)
		rep.Kicks = c.Kicks()
	case "rx":
		var srcFn func()
		if *injTap != "" || *injGSO != "" {
			in, buf, err := newSource(*injTap, *injGSO, *size)
			if err != nil {
				return err
			}
			defer in.Close()
			b := *injBatch
			srcFn = func() { in.Send(buf, b) }
		}
		c.RxLoop(stop, &n, srcFn)
		rep.Kicks = c.Kicks()
	case "ping":
		if rep.Ping, err = ping(c, *dstMAC, *src, *dst, *dur); err != nil {
			return err
		}
	case "idle":
		c.PostRx()
		<-stop
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	rep.Frames, rep.Bytes = n.Frames.Load(), n.Bytes.Load()
	emit(rep)
	return nil
}

// ping is fe --mode ping: echo requests from src to dst (the TAP's MAC
// dstMAC) for d.
func ping(c *fe.Conn, dstMAC, src, dst string, d time.Duration) (*fe.PingResult, error) {
	mac, err := net.ParseMAC(dstMAC)
	if err != nil {
		return nil, err
	}
	s, t := net.ParseIP(src), net.ParseIP(dst)
	if s == nil || t == nil {
		return nil, fmt.Errorf("ping needs --src and --dst")
	}
	id := uint16(os.Getpid())
	r := c.Ping(frames.ICMPEcho(mac, s, t, id), id, d)
	return &r, nil
}

func rawMain(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	name := fs.String("tap", "", "TAP to create")
	size := fs.Int("size", 64, "frame size (65480: 64 KiB TSO)")
	uring := fs.Int("uring", 0, "batches of this many writes (rawtx) or reads (rawrx) per io_uring_enter (0: one write(2) or read(2) per frame)")
	fixed := fs.Bool("uring-fixed", false, "--uring: write to or read from the TAP fd registered as a fixed file")
	cold := fs.Int("cold", -1, "the fair limit: a partner thread pinned on this CPU writes every frame just before it is sent (rawtx), or reads every frame just after it arrived (rawrx); -1: off")
	self := fs.Int("cpu", 1, "--cold: the CPU of the loop's own thread")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tso := *size >= frames.TSOFrame
	fd, err := rawtap.Open(*name, tso)
	if err != nil {
		return err
	}
	if err := linkUp(*name); err != nil {
		return err
	}
	stop := stopOn(0)
	var flag atomic.Bool
	go func() { <-stop; flag.Store(true) }()
	var n rawtap.Counters
	var waits uint64
	if *cold >= 0 {
		runtime.GOMAXPROCS(2) // the loop and its partner, each on its own CPU
	}
	switch {
	case cmd == "rawtx" && *cold >= 0 && *uring > 0:
		if !*fixed {
			return fmt.Errorf("rawtx --cold --uring needs --uring-fixed")
		}
		hdr, fr := frameFor(*size, true)
		if waits, err = rawtap.WriteLoopColdUring(fd, append(hdr[:], fr...), *uring, *self, *cold, &flag, &n); err != nil {
			return err
		}
	case cmd == "rawtx" && *cold >= 0:
		hdr, fr := frameFor(*size, true)
		if waits, err = rawtap.WriteLoopCold(fd, append(hdr[:], fr...), *self, *cold, &flag, &n); err != nil {
			return err
		}
	case cmd == "rawrx" && *cold >= 0:
		if waits, err = rawtap.ReadLoopCold(fd, 65536+4096, *self, *cold, &flag, &n); err != nil {
			return err
		}
	case cmd == "rawtx" && *uring > 0:
		hdr, fr := frameFor(*size, true)
		if err := rawtap.WriteLoopUring(fd, append(hdr[:], fr...), uint32(*uring), *fixed, &flag, &n); err != nil {
			return err
		}
	case cmd == "rawtx":
		hdr, fr := frameFor(*size, true)
		rawtap.WriteLoop(fd, append(hdr[:], fr...), &flag, &n)
	case *uring > 0:
		if err := rawtap.ReadLoopUring(fd, 65536+4096, uint32(*uring), *fixed, &flag, &n); err != nil {
			return err
		}
	default:
		rawtap.ReadLoop(fd, 65536+4096, &flag, &n)
	}
	emit(Report{Frames: n.Frames.Load(), Bytes: n.Bytes.Load(), Errors: n.Errors.Load(), Waits: waits})
	return nil
}

func injectMain(args []string) error {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	name := fs.String("tap", "", "interface to send through")
	size := fs.Int("size", 64, "frame size (65480: 64 KiB TSO)")
	udpGSO := fs.String("udp-gso", "", "send 64 KiB UDP GSO datagrams to this IPv4 address instead (routed through the TAP)")
	duty := fs.Float64("duty", 0, "pace the source: batches on a SCHED_FIFO thread, sleeping so that sending takes this share of the CPU (0: send flat out)")
	batch := fs.Int("batch", 32, "--duty: frames per batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	in, buf, err := newSource(*name, *udpGSO, *size)
	if err != nil {
		return err
	}
	defer in.Close()
	stop := stopOn(0)
	var flag atomic.Bool
	go func() { <-stop; flag.Store(true) }()
	var n rawtap.Counters
	if *duty > 0 {
		if err := in.PacedLoop(buf, *batch, *duty, &flag, &n); err != nil {
			return err
		}
	} else {
		in.Loop(buf, &flag, &n)
	}
	emit(Report{Frames: n.Frames.Load(), Errors: n.Errors.Load()})
	return nil
}

// newSource opens the guest-RX source: 64 KiB UDP GSO datagrams to udpGSO
// when set, else frames of size (at most 1514: a socket cannot send more
// than the MTU) through TAP name.
func newSource(name, udpGSO string, size int) (*rawtap.Injector, []byte, error) {
	if udpGSO != "" {
		in, err := rawtap.NewUDPGSO(udpGSO)
		return in, make([]byte, rawtap.UDPGSOPayload), err
	}
	in, err := rawtap.NewInjector(name, false, 1)
	return in, frames.UDP(min(size, 1514), frames.GuestMAC, frames.OtherMAC), err
}

// xdpSinkMain attaches xdptap's count-and-drop program to a TAP until
// SIGTERM and prints what it counted (for profiling runs by hand).
func xdpSinkMain(args []string) error {
	fs := flag.NewFlagSet("xdpsink", flag.ContinueOnError)
	name := fs.String("tap", "", "TAP to attach to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(*name)
	if err != nil {
		return err
	}
	att, err := xdptap.Attach(ifi.Index, xdptap.Config{Mode: xdptap.ModeCountDrop})
	if err != nil {
		return err
	}
	defer att.Close()
	<-stopOn(0)
	m, err := att.Counters()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(m)
}
