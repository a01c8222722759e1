package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/perf/internal/rawtap"
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
	// Unavailable says why the subject could not be measured with this
	// back-end (packed rings not offered): not a failed run.
	Unavailable string `json:"unavailable,omitempty"`
}

// addNote appends n (if any) to r's note.
func (r *Run) addNote(n string) {
	if n != "" {
		r.Note = strings.TrimPrefix(r.Note+"; "+n, "; ")
	}
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
	Vhostd string `json:"-"` // vhostd binary
	// Before is the vhostd binary of the vhostd-before subject (empty:
	// none); BeforeAt says what it was built from (recorded).
	Before   string `json:"-"`
	BeforeAt string `json:"vhostd_before,omitempty"`
	Self     string `json:"-"` // this binary (children)
	Testpmd  string
	Dir      string `json:"-"` // sockets
	Only     string // substring filter on group names
	Sink     string // guest-TX sink: xdp or stack
	// Duty paces the guest-RX source of the DPDK front-end's groups (vperf
	// inject --duty; 0: flat out).
	Duty  float64
	Smoke bool
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

// runOne measures subject s of group g once. Back-end (or raw loop) on
// CPU 1, front-end and injector on CPU 0.
func (h *harness) runOne(g Group, s Subject, round int) (r Run) {
	x := h.newRunState(g, s)
	r = Run{Group: g.Name, Subject: s.Name, Round: round, Start: x.began.UTC().Format(time.RFC3339)}
	r.Load1, _ = loadavg()
	defer x.cleanUp(&r)
	if err := x.setUp(&r); err != nil {
		r.Error = err.Error()
		return r
	}
	if g.Dir == "ping" {
		if err := x.ping(&r); err != nil {
			r.Error = err.Error()
		}
		return r
	}
	x.measure(&r)
	x.checkPacked(&r)
	note, err := x.ctl.close()
	x.ctl = nil
	r.addNote(note)
	if err != nil && r.Error == "" {
		r.Error = err.Error()
	}
	return r
}

// runState is one run under way: the names it made up, the processes it
// started and the XDP programs it attached, all of which its clean-up
// removes.
type runState struct {
	h      *harness
	g      Group
	s      Subject
	tap    string
	sock   string
	prefix string // DPDK file prefix; testpmd appends b (back-end) or f (front-end)
	size   string // g.Size as a flag value
	began  time.Time

	be, fe, inj *proc
	sigBE       syscall.Signal // what stops the back-end
	xdp         []*xdptap.Attachment
	// att is the last program attached: when set, the throughput figures
	// are its counters instead of the TAP's.
	att             *xdptap.Attachment
	hostIP, guestIP string // the TAP's and the guest's address (ping, guest RX of TSO frames)
	ctl             *ctlPoller
}

func (h *harness) newRunState(g Group, s Subject) *runState {
	h.seq++
	id := fmt.Sprintf("%s%d", h.suffix, h.seq)
	return &runState{
		h: h, g: g, s: s,
		tap:    "vp" + id,
		sock:   filepath.Join(h.o.Dir, "s"+id+".sock"),
		prefix: "vperf" + id,
		size:   strconv.Itoa(g.Size),
		began:  time.Now(),
		sigBE:  syscall.SIGTERM,
	}
}

// raw reports whether the subject is a raw loop standing in for the
// back-end: no socket, no front-end.
func (x *runState) raw() bool { return x.s.Kind == kRawTx || x.s.Kind == kRawRx }

// cleanUp detaches the XDP programs, stops the processes and removes the
// TAP, the socket and DPDK's run directories; it adds the back-end's last
// lines to a failed run's error and records the wall time.
func (x *runState) cleanUp(r *Run) {
	x.ctl.close()
	for i := len(x.xdp) - 1; i >= 0; i-- {
		x.xdp[i].Close()
	}
	// testpmd's virtio-user front-end is killed: on SIGTERM it waited
	// 0.8 s for a vhostd back-end and timed out (8 s) on a testpmd one,
	// and it has nothing to save (its memory is a memfd, its run
	// directory is removed below).
	sigFE := syscall.SIGTERM
	if x.g.FE == "dpdk" {
		sigFE = syscall.SIGKILL
	}
	x.fe.stop(sigFE)
	x.inj.stop(syscall.SIGTERM)
	if x.inj != nil && strings.Contains(x.inj.stderr.String(), rawtap.NoFIFO) {
		r.addNote(lastLines(x.inj.stderr.String(), 1))
	}
	x.be.stop(x.sigBE)
	if x.s.cold() && x.be != nil {
		r.addNote(partnerNote(x.be.stdout.Bytes()))
	}
	if exists("/sys/class/net/" + x.tap) {
		sh("ip", "link", "del", "dev", x.tap)
	}
	os.Remove(x.sock)
	os.Remove(x.sock + ".ctl")
	for _, suf := range []string{"b", "f"} {
		os.RemoveAll("/var/run/dpdk/" + x.prefix + suf)
	}
	if r.Error != "" && x.be != nil {
		r.Error += " | backend stderr: " + lastLines(x.be.stderr.String(), 4)
	}
	r.WallSeconds = time.Since(x.began).Seconds()
}

// partnerNote says how often a cold raw loop waited for its partner
// thread (from the loop's report; the whole run, not only the window).
func partnerNote(report []byte) string {
	var rep struct{ Frames, Waits uint64 }
	if err := json.Unmarshal(bytes.TrimSpace(report), &rep); err != nil || rep.Frames == 0 {
		return "no report from the cold loop"
	}
	return fmt.Sprintf("the partner thread was not done before %.1f%% of the frames (a limit set by the partner, not the TAP, if most)", 100*float64(rep.Waits)/float64(rep.Frames))
}

// setUp starts the back-end, waits for its socket and TAP, attaches the
// XDP programs, gives the TAP its addresses and starts the front-end and
// the injector.
func (x *runState) setUp(r *Run) error {
	if err := x.startBackend(); err != nil {
		return err
	}
	if !x.raw() {
		if err := waitFor("the back-end's socket", 60*time.Second, func() bool { return exists(x.sock) }, x.be); err != nil {
			return err
		}
	}
	if err := waitFor("the TAP", 60*time.Second, func() bool { return exists("/sys/class/net/" + x.tap) }, x.be); err != nil {
		return err
	}
	// No IPv6 chatter (router solicitations) on the TAP.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+x.tap+"/disable_ipv6", []byte("1"), 0)
	if err := x.attachXDP(r); err != nil {
		return err
	}
	if x.g.Dir == "ping" || (x.g.Dir == "rx" && x.g.Size == tsoSize) {
		if err := x.address(); err != nil {
			return err
		}
	}
	if !x.raw() {
		if err := x.startFrontEnd(); err != nil {
			return err
		}
	}
	if x.s.CtlPoll > 0 {
		x.ctl = pollControl(x.sock+".ctl", x.s.CtlPoll)
	}
	if x.g.Dir == "rx" && (x.raw() || x.g.FE == "dpdk") {
		return x.startInjector()
	}
	return nil
}
