package qemutests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// The migration tests' set-up (migration_test.go): two back-ends (vhostd or DPDK's testpmd),
// each with its own TAP, both TAPs ports of one bridge that holds the host address; QEMUs
// started on either side, the source booting the guest, the destination with -incoming.

// migrationStatus is what query-migrate reports.
type migrationStatus struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	ErrorDesc string `json:"error-desc"`
	RAM       struct {
		Transferred int64 `json:"transferred"`
	} `json:"ram"`
}

func (s migrationStatus) final() bool {
	return s.Status == "completed" || s.Status == "failed" || s.Status == "cancelled"
}

// migGuestScript runs in every migration guest: a ping loop towards the host (one ping every
// ~100 ms, "PINGOK n"/"PINGLOST n") and a command loop on port 5000: "recv PORT" receives one
// TCP stream and prints its SHA-256, "send PORT BYTES" sends that many random bytes to the
// host and prints theirs, "udpstat" prints the kernel's UDP counters (InDatagrams NoPorts
// ...).
const migGuestScript = `echo "LOOP start"
(i=0; while true; do
	i=$((i+1))
	if ping -c 1 -W 1 $HIP >/dev/null 2>&1; then echo "PINGOK $i"; else echo "PINGLOST $i"; fi
	sleep 0.1
done) &
while true; do
	set -- $(nc -l -p 5000 </dev/null)
	case "$1" in
	recv) (echo "XFER listen port=$2"; s=$(nc -l -p $2 </dev/null | sha256sum | cut -d' ' -f1); echo "XFER received port=$2 sha=$s") & ;;
	udpstat) echo "UDPSTAT $(grep '^Udp: [0-9]' /proc/net/snmp)" ;;
	send) (mkfifo /tmp/q$2; sha256sum </tmp/q$2 >/tmp/s$2 & head -c $3 /dev/urandom | tee /tmp/q$2 | nc $HIP $2 >/dev/null; wait
		echo "XFER sent port=$2 sha=$(cut -d' ' -f1 /tmp/s$2)"; rm -f /tmp/q$2 /tmp/s$2) & ;;
	esac
done
`

// migEnv is one scenario's pair of back-ends on one bridge.
type migEnv struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	sn     guest.Subnet
	br     string
	mac    string
	kind   string // "vhostd" or "testpmd"
	queues int
	extra  []string // vhostd arguments
	// client: each QEMU listens on its socket (server=on) and its vhostd
	// connects (--client in extra), the mode libvirt's mode='server' uses.
	client bool
	socks  [2]string
	taps   [2]string
	backs  [2]*guest.Process
	starts [2]int
	nvm    int
	pings  pingLog
	// maxGap bounds the longest ping gap across a migration (finish); 0: no bound (the
	// failure scenarios, whose guest waits for an operator).
	maxGap time.Duration
}

// newMigEnv starts two back-ends of kind (queues pairs each) and bridges their TAPs.
func newMigEnv(t *testing.T, ctx context.Context, kind string, queues int, extra ...string) *migEnv {
	t.Helper()
	e := &migEnv{t: t, ctx: ctx, dir: TempDir(t), sn: Subnet(t), mac: guest.RandomMAC(), kind: kind, queues: queues, extra: extra,
		client: slices.Contains(extra, "--client"), maxGap: 10 * time.Second}
	for i := range e.socks {
		e.socks[i] = filepath.Join(e.dir, fmt.Sprintf("vu%d.sock", i))
		e.taps[i] = TapName()
		e.startBackend(i)
	}
	e.br = "vhb" + guest.RandomSuffix(8)
	e.ip("link", "add", e.br, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", e.br).Run() })
	e.ip("link", "set", e.br, "up")
	for i := range e.taps {
		e.enslave(i)
	}
	HostAddr(t, e.br, e.sn.HostCIDR())
	return e
}

func (e *migEnv) ip(args ...string) {
	e.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		e.t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

func (e *migEnv) enslave(i int) {
	e.t.Helper()
	e.ip("link", "set", e.taps[i], "master", e.br)
	e.ip("link", "set", e.taps[i], "up")
}

var sideName = [2]string{"A", "B"}

// startBackend starts back-end i (again, after a kill: same socket, same TAP name) and waits
// for its socket and TAP.
func (e *migEnv) startBackend(i int) {
	t := e.t
	t.Helper()
	e.starts[i]++
	name := fmt.Sprintf("%s %s", e.kind, sideName[i])
	if e.starts[i] > 1 {
		name += fmt.Sprintf(" (start %d)", e.starts[i])
	}
	var p *guest.Process
	switch e.kind {
	case "vhostd":
		args := []string{"--socket-path", e.socks[i], "--tap", e.taps[i], "--log-level", "debug", "--queues", strconv.Itoa(e.queues)}
		p = startVhostd(t, name+" log", append(args, e.extra...)...)
	case "testpmd":
		bin, err := exec.LookPath("dpdk-testpmd")
		if err != nil {
			t.Fatalf("dpdk-testpmd: %v", err)
		}
		prefix := "vhq-" + guest.RandomSuffix(8)
		os.Remove(e.socks[i]) // a restart: testpmd does not replace a stale socket
		p, err = guest.StartProcess(name, nil, bin,
			"--lcores=(0,1)@1", "--no-pci", "--no-huge", "-m", "1024", "--file-prefix="+prefix,
			"--vdev", fmt.Sprintf("net_vhost0,iface=%s,queues=%d", e.socks[i], e.queues), "--vdev", "net_tap0,iface="+e.taps[i],
			"--", "--nb-cores=1", "--forward-mode=io", "--auto-start", "--stats-period=60", "--total-num-mbufs=16384")
		if err != nil {
			t.Fatalf("%v", err)
		}
		t.Logf("testpmd %s pid %d", sideName[i], p.PID())
		AddLog(t, name+" log", p.Log)
		t.Cleanup(func() {
			p.Stop(VhostdStopGrace)
			os.RemoveAll(filepath.Join("/var/run/dpdk", prefix))
		})
	}
	// A --client vhostd connects to the socket its QEMU makes later.
	if !e.client {
		if err := guest.WaitFile(e.ctx, e.socks[i], p); err != nil {
			t.Fatalf("%s socket: %v", name, err)
		}
	}
	if err := guest.WaitFile(e.ctx, "/sys/class/net/"+e.taps[i], p); err != nil {
		t.Fatalf("%s TAP: %v", name, err)
	}
	e.backs[i] = p
}

// migVM is one QEMU of the scenario.
type migVM struct {
	e    *migEnv
	name string
	side int
	g    *guest.Guest
	qmp  *guest.QMP
	mig  string // -incoming socket, "" for a source
}

// vmOpts is what a scenario's QEMUs share (both ends of a migration must match).
type vmOpts struct {
	CPUs        int
	ReconnectMS int
	QEMUArgs    []string
}

// start boots a QEMU on side's back-end: the source (incoming false) boots the guest and
// waits for its first pings; the destination waits on a migration socket.
func (e *migEnv) start(side int, incoming bool, o vmOpts) *migVM {
	t := e.t
	t.Helper()
	e.nvm++
	vm := &migVM{e: e, side: side, name: fmt.Sprintf("qemu%d on %s", e.nvm, sideName[side])}
	qmpPath := filepath.Join(e.dir, fmt.Sprintf("qmp%d", e.nvm))
	args := append([]string(nil), o.QEMUArgs...)
	if incoming {
		vm.mig = filepath.Join(e.dir, fmt.Sprintf("mig%d", e.nvm))
		args = append(args, "-incoming", "unix:"+vm.mig)
	}
	g, err := guest.Boot(context.Background(), guest.Options{
		QEMU:     Gate(t),
		CPUs:     o.CPUs,
		NIC:      &guest.NIC{SocketPath: e.socks[side], Server: e.client, MAC: e.mac, QueuePairs: e.queues, ReconnectMS: o.ReconnectMS},
		GuestIP:  e.sn.GuestCIDR(),
		Files:    GuestFiles(e.sn, nil),
		Script:   WithLib(migGuestScript),
		QEMUArgs: args,
		QMP:      qmpPath,
		Serial:   &lineTap{f: func(l string) { e.pings.line(l) }},
	})
	if err != nil {
		t.Fatalf("boot %s: %v", vm.name, err)
	}
	vm.g = g
	t.Logf("%s: pid %d", vm.name, g.PID())
	AddFailureLog(t, vm.name+" serial console", g.Log)
	AddLog(t, vm.name+" stderr", g.QEMULog)
	AddFailureLog(t, vm.name+" command line", g.Command)
	t.Cleanup(g.Close)
	if e.client && runAs() {
		// QEMU made its socket for root (0755) and waits for the back-end before it
		// answers QMP: open it to vhostd --client --runas.
		if err := guest.WaitFile(e.ctx, e.socks[side], nil); err != nil {
			t.Fatalf("%s's vhost-user socket: %v", vm.name, err)
		}
		os.Chmod(e.socks[side], 0o777)
	}
	if vm.qmp, err = guest.DialQMP(e.ctx, qmpPath); err != nil {
		t.Fatalf("%s: %v", vm.name, err)
	}
	t.Cleanup(func() { vm.qmp.Close() })
	if incoming {
		if err := guest.WaitFile(e.ctx, vm.mig, nil); err != nil {
			t.Fatalf("%s's migration socket: %v", vm.name, err)
		}
	} else if _, err := g.WaitFor(e.ctx, regexp.MustCompile(`PINGOK \d+\n(.*\n)*PINGOK \d+\n`)); err != nil {
		t.Fatalf("%s: the guest does not ping the host: %v", vm.name, err)
	}
	return vm
}

// do runs a QMP command on vm.
func (vm *migVM) do(cmd string, args any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(vm.e.ctx, time.Minute)
	defer cancel()
	return vm.qmp.Execute(ctx, cmd, args)
}

// status is QEMU's run state (query-status).
func (vm *migVM) status() string {
	ctx, cancel := context.WithTimeout(vm.e.ctx, time.Minute)
	defer cancel()
	s, err := vm.qmp.Status(ctx)
	if err != nil {
		return "error: " + err.Error()
	}
	return s
}

func (vm *migVM) query() migrationStatus {
	vm.e.t.Helper()
	r, err := vm.do("query-migrate", nil)
	if err != nil {
		vm.e.t.Fatalf("%s: %v", vm.name, err)
	}
	var st migrationStatus
	json.Unmarshal(r, &st)
	return st
}

// setBandwidth sets the migration's max-bandwidth in bytes/s.
func (vm *migVM) setBandwidth(bps int64) {
	vm.e.t.Helper()
	if _, err := vm.do("migrate-set-parameters", map[string]any{"max-bandwidth": bps}); err != nil {
		vm.e.t.Fatalf("%s: %v", vm.name, err)
	}
}

// startMigration issues migrate from src to dst.
func (e *migEnv) startMigration(src, dst *migVM) time.Time {
	e.t.Helper()
	t0 := time.Now()
	if _, err := src.do("migrate", map[string]any{"uri": "unix:" + dst.mig}); err != nil {
		e.t.Fatalf("%s: %v", src.name, err)
	}
	return t0
}

// waitMigration polls query-migrate on src until the migration ends; it also ends when the
// destination QEMU exits and src still reports it active for 30 s more.
func (e *migEnv) waitMigration(src *migVM, until func(migrationStatus) bool) migrationStatus {
	e.t.Helper()
	if until == nil {
		until = migrationStatus.final
	}
	for {
		st := src.query()
		if until(st) {
			return st
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("migration from %s still %q: %v", src.name, st.Status, e.ctx.Err())
		case <-src.g.Done():
			e.t.Fatalf("source %s exited during the migration: %s", src.name, src.g.QEMULog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// finish checks a completed migration: the destination runs, the source is quit, the
// destination's guest pings again and its console shows no virtqueue trouble, the bridge has
// the guest's MAC on the destination's TAP. It logs the figures and returns the longest ping
// gap around the migration.
func (e *migEnv) finish(src, dst *migVM, t0 time.Time, st migrationStatus) time.Duration {
	t := e.t
	t.Helper()
	if st.Status != "completed" {
		t.Fatalf("migration %s -> %s: %s: %s", src.name, dst.name, st.Status, st.ErrorDesc)
	}
	done := time.Now()
	if s := dst.status(); s != "running" {
		t.Errorf("%s after the migration: %s, want running", dst.name, s)
	}
	src.quit()
	from := len(dst.g.Log())
	if _, err := dst.g.WaitForFrom(e.ctx, regexp.MustCompile(`(PINGOK \d+\n(.*\n)*){3}`), from); err != nil {
		t.Fatalf("no pings answered on %s after the migration: %v", dst.name, err)
	}
	gap, ok, lost := e.pings.window(t0, time.Now())
	t.Logf("migration %s -> %s completed: total %d ms, downtime %d ms (QEMU); longest ping gap %d ms, %d pings answered, %d lost between migrate and 3 pings after (host: %d ms from migrate to this check)",
		src.name, dst.name, st.TotalTime, st.Downtime, gap.Milliseconds(), ok, lost, done.Sub(t0).Milliseconds())
	if e.maxGap > 0 && gap > e.maxGap {
		t.Errorf("longest ping gap %v across the migration, want at most %v", gap, e.maxGap)
	}
	e.checkConsole(dst)
	e.checkFDB(dst.side)
	return gap
}

// quit ends a QEMU (QMP quit, then SIGKILL) and waits for it.
func (vm *migVM) quit() {
	vm.do("quit", nil)
	select {
	case <-vm.g.Done():
	case <-time.After(10 * time.Second):
		vm.g.Kill()
	}
}

// checkConsole fails the test on virtqueue or NIC errors in vm's guest console
// (KernelErrors).
func (e *migEnv) checkConsole(vm *migVM) {
	e.t.Helper()
	for _, l := range KernelErrors(vm.g.Log()) {
		e.t.Errorf("%s's guest console: %q", vm.name, l)
	}
}

// checkFDB waits until the bridge has learned the guest's MAC on side's TAP.
func (e *migEnv) checkFDB(side int) {
	e.t.Helper()
	want := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(e.mac) + ` dev (\S+)`)
	var last string
	for {
		out, _ := exec.Command("bridge", "fdb", "show", "br", e.br).CombinedOutput()
		last = string(out)
		if m := want.FindStringSubmatch(last); m != nil && m[1] == e.taps[side] {
			e.t.Logf("bridge fdb: %s on %s (the %s TAP) after the migration", e.mac, m[1], sideName[side])
			return
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("bridge %s never learned %s on %s: %s", e.br, e.mac, e.taps[side], last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// command sends the guest's command loop one line (port 5000).
func (e *migEnv) command(cmd string) {
	e.t.Helper()
	c, err := e.dial(e.ctx, net.JoinHostPort(e.sn.GuestIP(), "5000"))
	if err != nil {
		e.t.Fatalf("guest command %q: %v", cmd, err)
	}
	defer c.Close()
	io.WriteString(c, cmd+"\n")
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, c)
}

func (e *migEnv) dial(ctx context.Context, addr string) (net.Conn, error) {
	for {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kill SIGKILLs back-end i.
func (e *migEnv) kill(i int) {
	e.t.Helper()
	if err := e.backs[i].Signal(syscall.SIGKILL); err != nil {
		e.t.Fatalf("SIGKILL %s %s: %v", e.kind, sideName[i], err)
	}
	<-e.backs[i].Done()
}

// waitActive waits until a (slowed) migration from src has moved 4 MiB of RAM and is still
// active.
func (e *migEnv) waitActive(src *migVM) migrationStatus {
	e.t.Helper()
	st := e.waitMigration(src, func(s migrationStatus) bool { return s.final() || s.RAM.Transferred > 4<<20 })
	if st.Status != "active" {
		e.t.Fatalf("migration %s (%s), want active mid-way", st.Status, st.ErrorDesc)
	}
	return st
}

// setLink sets vm's NIC link up or down (QMP set_link on the netdev).
func (vm *migVM) setLink(up bool) {
	vm.e.t.Helper()
	if _, err := vm.do("set_link", map[string]any{"name": "n0", "up": up}); err != nil {
		vm.e.t.Fatalf("%s: %v", vm.name, err)
	}
}

// waitLost waits for n pings in a row lost on vm's console after byte offset from: the
// guest has no network.
func (vm *migVM) waitLost(n, from int) {
	vm.e.t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`(PINGLOST \d+\n){%d}`, n))
	if _, err := vm.g.WaitForFrom(vm.e.ctx, re, from); err != nil {
		vm.e.t.Fatalf("%s: want %d pings lost in a row: %v", vm.name, n, err)
	}
}
