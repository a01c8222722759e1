package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/xdptap"
)

// Run is one measurement of one subject in one round.
type Run struct {
	Group   string `json:"group"`
	Subject string `json:"subject"`
	Round   int    `json:"round"`
	Start   string `json:"start"`

	Frames  uint64  `json:"frames"`
	Bytes   uint64  `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Mpps    float64 `json:"mpps"`
	Gbps    float64 `json:"gbps"`
	// CPUNsPerFrame and Cores are per process role: backend, fe, inject.
	CPUNsPerFrame map[string]float64 `json:"cpu_ns_per_frame,omitempty"`
	Cores         map[string]float64 `json:"cores"`
	// Foreign is the CPU (in cores) used during the window by everything
	// the harness did not start; Load1 is the 1-minute load average at
	// the start of the run.
	Foreign float64 `json:"foreign_cores"`
	Load1   float64 `json:"load1"`

	RTTP50us float64 `json:"rtt_p50_us,omitempty"`
	RTTP99us float64 `json:"rtt_p99_us,omitempty"`
	RTTMinus float64 `json:"rtt_min_us,omitempty"`
	Pings    int     `json:"pings,omitempty"`
	Lost     int     `json:"lost,omitempty"`

	// Sink is what consumed guest TX frames: "xdp" (xdptap's
	// count-and-drop program on the TAP) or "stack" (the host stack).
	Sink string `json:"sink,omitempty"`

	// SetupSeconds is the time from the run's start until traffic moved
	// (or the idle wait began); WallSeconds the whole run, clean-up
	// included. They show where the matrix's time goes.
	SetupSeconds float64 `json:"setup_s"`
	WallSeconds  float64 `json:"wall_s"`

	Noisy []string `json:"noisy,omitempty"`
	Note  string   `json:"note,omitempty"`
	Error string   `json:"error,omitempty"`
}

// value returns the named figure of r.
func (r Run) value(m string) float64 {
	switch m {
	case "mpps":
		return r.Mpps
	case "gbps":
		return r.Gbps
	case "rtt_p50_us":
		return r.RTTP50us
	case "rtt_p99_us":
		return r.RTTP99us
	case "backend_cores":
		return r.Cores["backend"]
	case "backend_ns":
		return r.CPUNsPerFrame["backend"]
	case "fe_ns":
		return r.CPUNsPerFrame["fe"]
	case "inject_ns":
		return r.CPUNsPerFrame["inject"]
	case "fe_cores":
		return r.Cores["fe"]
	case "capacity_mpps":
		// What one fully busy core would move at this run's back-end CPU
		// cost per frame: robust when the front-end, not the back-end, is
		// starved by other load on the machine.
		if ns := r.CPUNsPerFrame["backend"]; ns > 0 {
			return 1e3 / ns
		}
	}
	return 0
}

// Options are the harness settings.
type Options struct {
	Rounds int
	Window time.Duration // throughput measurement window
	Warmup time.Duration
	Ping   time.Duration
	Idle   time.Duration
	// Vhostd, Self and Dir are temporary paths of one run: not recorded.
	Vhostd  string `json:"-"` // vhostd binary
	Self    string `json:"-"` // this binary (children)
	Testpmd string
	Dir     string `json:"-"` // sockets
	Only    string // substring filter on group names
	Sink    string // guest-TX sink: xdp or stack
	Smoke   bool
}

type harness struct {
	o      Options
	suffix string
	seq    int
	netSeq int
	net8   [2]int // 10.A.B.0/24 block for ping addresses
}

func newHarness(o Options) *harness {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	h := &harness{o: o, suffix: fmt.Sprintf("%04x", r.Intn(1<<16))}
	h.net8 = [2]int{100 + r.Intn(100), r.Intn(256)}
	return h
}

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

// runOne measures subject s of group g once. Back-end (or raw loop) on
// CPU 1, front-end and injector on CPU 0.
func (h *harness) runOne(g Group, s Subject, round int) (r Run) {
	h.seq++
	id := fmt.Sprintf("%s%d", h.suffix, h.seq)
	tap := "vp" + id
	sock := filepath.Join(h.o.Dir, "s"+id+".sock")
	prefix := "vperf" + id
	began := time.Now()
	r = Run{Group: g.Name, Subject: s.Name, Round: round, Start: began.UTC().Format(time.RFC3339)}
	r.Load1, _ = loadavg()
	var be, fe, inj *proc
	sigBE := syscall.SIGTERM
	defer func() {
		// testpmd's virtio-user front-end is killed: on SIGTERM it waited
		// 0.8 s for a vhostd back-end and timed out (8 s) on a testpmd one,
		// and it has nothing to save (its memory is a memfd, its run
		// directory is removed below).
		sigFE := syscall.SIGTERM
		if g.FE == "dpdk" {
			sigFE = syscall.SIGKILL
		}
		fe.stop(sigFE)
		inj.stop(syscall.SIGTERM)
		be.stop(sigBE)
		if exists("/sys/class/net/" + tap) {
			sh("ip", "link", "del", "dev", tap)
		}
		os.Remove(sock)
		for _, suf := range []string{"b", "f"} {
			os.RemoveAll("/var/run/dpdk/" + prefix + suf)
		}
		if r.Error != "" && be != nil {
			r.Error += " | backend stderr: " + lastLines(be.stderr.String(), 4)
		}
		r.WallSeconds = time.Since(began).Seconds()
	}()
	fail := func(err error) Run {
		r.Error = err.Error()
		return r
	}
	size := strconv.Itoa(g.Size)
	var err error
	switch s.Kind {
	case kVhostd:
		argv := []string{h.o.Vhostd, "--socket-path", sock, "--tap", tap, "--queues", "1",
			"--busy-poll", strconv.Itoa(s.BusyPoll), "--cpus", "1", "--log-level", "warn"}
		cpus := s.CPUs
		if cpus == "" {
			cpus = "1"
		}
		be, err = start("backend", cpus, append(argv, s.Extra...)...)
	case kTestpmd:
		sigBE = syscall.SIGINT
		be, err = start("backend", "1", h.testpmd(prefix+"b", 1,
			[]string{"net_vhost0,iface=" + sock + ",queues=1", "net_tap0,iface=" + tap},
			"--forward-mode=io")...)
	case kRawTx, kRawRx:
		be, err = start("backend", "1", append([]string{h.o.Self, s.Kind, "--tap", tap, "--size", size}, s.Extra...)...)
	}
	if err != nil {
		return fail(err)
	}
	raw := s.Kind == kRawTx || s.Kind == kRawRx
	if !raw {
		if err := waitFor("the back-end's socket", 60*time.Second, func() bool { return exists(sock) }, be); err != nil {
			return fail(err)
		}
	}
	if err := waitFor("the TAP", 60*time.Second, func() bool { return exists("/sys/class/net/" + tap) }, be); err != nil {
		return fail(err)
	}
	// No IPv6 chatter (router solicitations) on the TAP.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+tap+"/disable_ipv6", []byte("1"), 0)

	// Guest-TX sink: xdptap's count-and-drop program, which counts in its
	// own map (XDP drops never reach the TAP's rx counters). 64 KiB TSO
	// frames go to the host stack instead: on a TAP, XDP sees a GSO frame
	// only through generic XDP on a linearized skb, a cost the guest's
	// frame would not otherwise pay.
	var att *xdptap.Attachment
	if g.Reflect {
		ifi, err := net.InterfaceByName(tap)
		if err == nil {
			att, err = xdptap.Attach(ifi.Index, xdptap.Config{Mode: xdptap.ModeReflect})
		}
		if err != nil {
			return fail(fmt.Errorf("xdp reflect: %w", err))
		}
		defer att.Close()
	}
	if g.Dir == "tx" {
		r.Sink = "stack"
		if h.o.Sink == "xdp" && g.Size != tsoSize {
			ifi, err := net.InterfaceByName(tap)
			if err == nil {
				att, err = xdptap.Attach(ifi.Index, xdptap.Config{Mode: xdptap.ModeCountDrop})
			}
			if err != nil {
				return fail(fmt.Errorf("xdp sink: %w", err))
			}
			r.Sink = "xdp"
			defer att.Close()
		}
	}

	var hostIP, guestIP string
	if g.Dir == "ping" || (g.Dir == "rx" && g.Size == tsoSize) {
		h.netSeq++
		n := h.netSeq % 64
		hostIP = fmt.Sprintf("10.%d.%d.%d", h.net8[0], h.net8[1], 4*n+1)
		guestIP = fmt.Sprintf("10.%d.%d.%d", h.net8[0], h.net8[1], 4*n+2)
		if err := sh("ip", "addr", "add", hostIP+"/30", "dev", tap); err != nil {
			return fail(err)
		}
		sh("ip", "link", "set", "dev", tap, "up")
		if err := sh("ip", "neigh", "replace", guestIP, "lladdr", "02:76:68:00:00:01", "dev", tap, "nud", "permanent"); err != nil {
			return fail(err)
		}
	}

	// Front-end and source.
	if !raw {
		switch {
		case g.FE == "dpdk":
			mode := map[string]string{"tx": "txonly", "rx": "rxonly", "idle": "rxonly"}[g.Dir]
			extra := []string{"--forward-mode=" + mode}
			if g.Dir == "tx" {
				extra = append(extra, "--txpkts="+size)
			}
			fe, err = start("fe", "0", h.testpmd(prefix+"f", 0, []string{"net_virtio_user0,path=" + sock + ",queues=1"}, extra...)...)
		case g.Dir == "ping":
			mac, _ := os.ReadFile("/sys/class/net/" + tap + "/address")
			fe, err = start("fe", "0", h.o.Self, "fe", "--socket", sock, "--mode", "ping", "--duration", h.o.Ping.String(),
				"--dst-mac", strings.TrimSpace(string(mac)), "--src", guestIP, "--dst", hostIP)
		case g.Dir == "rx":
			// The Go guest is its own traffic source, taking turns with its
			// ring on CPU 0.
			argv := []string{h.o.Self, "fe", "--socket", sock, "--mode", "rx", "--size", size, "--inject-tap", tap}
			if g.Size == tsoSize {
				argv = append(argv, "--inject-udp-gso", guestIP)
			}
			fe, err = start("fe", "0", argv...)
		default:
			fe, err = start("fe", "0", h.o.Self, "fe", "--socket", sock, "--mode", g.Dir, "--size", size)
		}
		if err != nil {
			return fail(err)
		}
	}
	if g.Dir == "rx" && (raw || g.FE == "dpdk") {
		argv := []string{h.o.Self, "inject", "--tap", tap, "--size", size}
		if g.Size == tsoSize {
			argv = append(argv, "--udp-gso", guestIP)
		}
		if inj, err = start("inject", "0", argv...); err != nil {
			return fail(err)
		}
	}
	if g.Dir == "ping" {
		r.SetupSeconds = time.Since(began).Seconds()
		select {
		case <-fe.done:
		case <-time.After(h.o.Ping + 60*time.Second):
			return fail(fmt.Errorf("ping front-end did not finish"))
		}
		var rep struct {
			Ping *struct{ Sent, Received, P50, P99, Min int64 }
		}
		if err := json.Unmarshal(bytes.TrimSpace(fe.stdout.Bytes()), &rep); err != nil || rep.Ping == nil {
			return fail(fmt.Errorf("ping front-end: %v %v: %s", err, fe.err, lastLines(fe.stderr.String(), 4)))
		}
		r.Pings, r.Lost = int(rep.Ping.Sent), int(rep.Ping.Sent-rep.Ping.Received)
		r.RTTP50us, r.RTTP99us, r.RTTMinus = float64(rep.Ping.P50)/1e3, float64(rep.Ping.P99)/1e3, float64(rep.Ping.Min)/1e3
		if rep.Ping.Received == 0 {
			// A measurement, not a harness failure (testpmd's TAP port never
			// received frames reflected by XDP; not investigated further).
			r.Note = "no echo reply came back"
		}
		return r
	}

	stat := map[string][2]string{"tx": {"rx_packets", "rx_bytes"}, "rx": {"tx_packets", "tx_bytes"}}[g.Dir]
	count := func() (uint64, uint64) {
		if g.Dir == "idle" {
			return 0, 0
		}
		if att != nil {
			m, err := att.Counters()
			if err != nil {
				return 0, 0
			}
			var p, b uint64
			for k, v := range m {
				switch {
				case strings.HasSuffix(k, "_packets"):
					p += v
				case strings.HasSuffix(k, "_bytes"):
					b += v
				}
			}
			return p, b
		}
		p, _ := tapStat(tap, stat[0])
		b, _ := tapStat(tap, stat[1])
		return p, b
	}
	procs := []*proc{be, fe, inj}
	if g.Dir == "idle" {
		r.SetupSeconds = time.Since(began).Seconds()
		// Connected and set up, then nothing: give the handshake time.
		time.Sleep(h.o.Warmup + time.Second)
	} else {
		p0, _ := count()
		moving := func() bool { p, _ := count(); return p > p0+100 }
		wait := 20 * time.Second
		if h.o.Smoke {
			wait = 5 * time.Second
		}
		if err := waitFor("traffic", wait, moving, procs...); err != nil {
			r.Note = fmt.Sprintf("no traffic within %v (%v); measured anyway", wait, err)
		}
		r.SetupSeconds = time.Since(began).Seconds()
		time.Sleep(h.o.Warmup)
	}
	window := h.o.Window
	if g.Dir == "idle" {
		window = h.o.Idle
	}
	f0, b0 := count()
	c0 := map[string]uint64{}
	for _, p := range procs {
		if p != nil {
			c0[p.role] = cpuNs(p.pid())
		}
	}
	m0, t0 := busyNs(), time.Now()
	time.Sleep(window)
	f1, b1 := count()
	el := time.Since(t0)
	m1 := busyNs()
	r.Frames, r.Bytes, r.Seconds = f1-f0, b1-b0, el.Seconds()
	r.Mpps = float64(r.Frames) / el.Seconds() / 1e6
	r.Gbps = float64(r.Bytes) * 8 / el.Seconds() / 1e9
	r.Cores = map[string]float64{}
	r.CPUNsPerFrame = map[string]float64{}
	var ours float64
	for _, p := range procs {
		if p == nil {
			continue
		}
		if p.exited() {
			r.Error = fmt.Sprintf("%s exited during the window (%v): %s", p.role, p.err, lastLines(p.stderr.String(), 4))
			return r
		}
		d := float64(cpuNs(p.pid()) - c0[p.role])
		r.Cores[p.role] = d / float64(el.Nanoseconds())
		ours += d
		if r.Frames > 0 {
			r.CPUNsPerFrame[p.role] = d / float64(r.Frames)
		}
	}
	r.Foreign = (float64(m1-m0) - ours) / float64(el.Nanoseconds())
	if r.Foreign < 0 {
		r.Foreign = 0
	}
	return r
}
