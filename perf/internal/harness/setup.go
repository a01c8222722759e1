package harness

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/vhostd/vhostd/xdptap"
)

// testpmd is the argv of one testpmd. 256 MiB holds its 32768 mbufs (about
// 75 MiB) with room to spare; with 1024 MiB (DESIGN.md's figure) a testpmd
// front-end and a testpmd back-end took 8.5 s to pass their first frame,
// mapping and faulting in each other's memory, against 1.5 s.
func (h *harness) testpmd(prefix string, cpu int, vdevs []string, extra ...string) []string {
	a := []string{h.o.Testpmd, "--no-pci", "--no-huge", "-m", "256", "--file-prefix=" + prefix,
		fmt.Sprintf("--lcores=(0,1)@%d", cpu), "--log-level=user1,notice"}
	for _, v := range vdevs {
		a = append(a, "--vdev", v)
	}
	a = append(a, "--", "--total-num-mbufs=32768", "--auto-start", "--stats-period", "3600")
	return append(a, extra...)
}

// startBackend starts the subject: vhostd, testpmd, or a raw loop.
func (x *runState) startBackend() error {
	var err error
	switch x.s.Kind {
	case kVhostd:
		x.be, err = x.startVhostd()
	case kTestpmd:
		x.be, err = x.startTestpmd()
	case kRawTx, kRawRx:
		x.be, err = x.startRaw()
	}
	return err
}

// startVhostd starts vhostd with one queue pair on the subject's CPUs
// (CPU 1 unless it names others).
func (x *runState) startVhostd() (*proc, error) {
	argv := []string{x.vhostdBinary(), "--socket-path", x.sock, "--tap", x.tap, "--queues", "1",
		"--busy-poll", strconv.Itoa(x.s.BusyPoll), "--cpus", "1", "--log-level", "warn"}
	if x.s.CtlPoll > 0 {
		argv = append(argv, "--control-socket", x.sock+".ctl")
	}
	cpus := x.s.CPUs
	if cpus == "" {
		cpus = "1"
	}
	return start("backend", cpus, append(argv, x.s.Extra...)...)
}

// vhostdBinary is the vhostd the subject runs: --vhostd, or
// --vhostd-before for vhostd-before.
func (x *runState) vhostdBinary() string {
	if x.s.Before {
		return x.h.o.Before
	}
	return x.h.o.Vhostd
}

// startTestpmd starts testpmd forwarding between a vhost-user port and a
// TAP port. It stops on SIGINT.
func (x *runState) startTestpmd() (*proc, error) {
	x.sigBE = syscall.SIGINT
	return start("backend", "1", x.h.testpmd(x.prefix+"b", 1,
		[]string{"net_vhost0,iface=" + x.sock + ",queues=1", "net_tap0,iface=" + x.tap},
		"--forward-mode=io")...)
}

// startRaw starts the raw write or read loop (this binary's rawtx or rawrx
// command) on the TAP.
func (x *runState) startRaw() (*proc, error) {
	return start("backend", "1", append([]string{x.h.o.Self, x.s.Kind, "--tap", x.tap, "--size", x.size}, x.s.Extra...)...)
}

// attachXDP attaches xdptap's reflect program (groups that reflect) and
// the guest-TX sink. The sink is xdptap's count-and-drop program, which
// counts in its own map (XDP drops never reach the TAP's rx counters).
// 64 KiB TSO frames go to the host stack instead: on a TAP, XDP sees a GSO
// frame only through generic XDP on a linearized skb, a cost the guest's
// frame would not otherwise pay.
func (x *runState) attachXDP(r *Run) error {
	if x.g.Reflect {
		if err := x.attach(xdptap.ModeReflect); err != nil {
			return fmt.Errorf("xdp reflect: %w", err)
		}
	}
	if x.g.Dir == "tx" {
		r.Sink = "stack"
		if x.h.o.Sink == "xdp" && x.g.Size != tsoSize {
			if err := x.attach(xdptap.ModeCountDrop); err != nil {
				return fmt.Errorf("xdp sink: %w", err)
			}
			r.Sink = "xdp"
		}
	}
	return nil
}

func (x *runState) attach(mode xdptap.Mode) error {
	ifi, err := net.InterfaceByName(x.tap)
	if err != nil {
		return err
	}
	att, err := xdptap.Attach(ifi.Index, xdptap.Config{Mode: mode})
	if err != nil {
		return err
	}
	x.xdp = append(x.xdp, att)
	x.att = att
	return nil
}

// address gives the TAP an address in a /30 of its own and a permanent
// neighbour entry for the guest's address behind it.
func (x *runState) address() error {
	h := x.h
	h.netSeq++
	n := h.netSeq % 64
	x.hostIP = fmt.Sprintf("10.%d.%d.%d", h.net8[0], h.net8[1], 4*n+1)
	x.guestIP = fmt.Sprintf("10.%d.%d.%d", h.net8[0], h.net8[1], 4*n+2)
	if err := sh("ip", "addr", "add", x.hostIP+"/30", "dev", x.tap); err != nil {
		return err
	}
	sh("ip", "link", "set", "dev", x.tap, "up")
	return sh("ip", "neigh", "replace", x.guestIP, "lladdr", "02:76:68:00:00:01", "dev", x.tap, "nud", "permanent")
}

// startFrontEnd starts the guest: testpmd's virtio-user port, or the Go
// front-end pinging, receiving (its own traffic source) or sending.
func (x *runState) startFrontEnd() error {
	var err error
	self, sock := x.h.o.Self, x.sock
	switch {
	case x.g.FE == "dpdk":
		mode := map[string]string{"tx": "txonly", "rx": "rxonly", "idle": "rxonly"}[x.g.Dir]
		extra := []string{"--forward-mode=" + mode}
		if x.g.Dir == "tx" {
			extra = append(extra, "--txpkts="+x.size)
		}
		vdev := "net_virtio_user0,path=" + sock + ",queues=1"
		if x.s.Packed {
			vdev += ",packed_vq=1"
		}
		x.fe, err = start("fe", "0", x.h.testpmd(x.prefix+"f", 0, []string{vdev}, extra...)...)
	case x.g.Dir == "ping":
		mac, _ := os.ReadFile("/sys/class/net/" + x.tap + "/address")
		x.fe, err = start("fe", "0", self, "fe", "--socket", sock, "--mode", "ping", "--duration", x.h.o.Ping.String(),
			"--dst-mac", strings.TrimSpace(string(mac)), "--src", x.guestIP, "--dst", x.hostIP)
	case x.g.Dir == "rx":
		// The Go guest is its own traffic source, taking turns with its
		// ring on CPU 0.
		argv := []string{self, "fe", "--socket", sock, "--mode", "rx", "--size", x.size, "--inject-tap", x.tap}
		if x.g.Size == tsoSize {
			argv = append(argv, "--inject-udp-gso", x.guestIP)
		}
		x.fe, err = start("fe", "0", append(argv, x.feFlags()...)...)
	default:
		argv := []string{self, "fe", "--socket", sock, "--mode", x.g.Dir, "--size", x.size}
		x.fe, err = start("fe", "0", append(argv, x.feFlags()...)...)
	}
	return err
}

// feFlags are the subject's flags for the Go front-end.
func (x *runState) feFlags() []string {
	if x.s.Packed {
		return append([]string{"--packed"}, x.s.FEFlags...)
	}
	return x.s.FEFlags
}

// startInjector starts `vperf inject`, the guest-RX source for front-ends
// that are not their own (testpmd, the raw read loop).
func (x *runState) startInjector() error {
	argv := []string{x.h.o.Self, "inject", "--tap", x.tap, "--size", x.size}
	if x.g.Size == tsoSize {
		argv = append(argv, "--udp-gso", x.guestIP)
	}
	if x.g.FE == "dpdk" && x.h.o.Duty > 0 {
		argv = append(argv, "--duty", strconv.FormatFloat(x.h.o.Duty, 'g', -1, 64))
	}
	var err error
	x.inj, err = start("inject", "0", argv...)
	return err
}
