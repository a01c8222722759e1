package qemutests

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// Stream sizes of the data scenario: large enough that both streams still run when QEMU
// switches over (a 1-vCPU TCG guest hashing both moves 2-10 MB/s in all; the guest makes its
// payload from /dev/urandom as it sends), small enough for 256 MiB guests (nothing is stored:
// both ends hash the stream as it passes).
const (
	migUpBytes   = 8 << 20  // guest->host
	migDownBytes = 48 << 20 // host->guest
)

// announceOff makes both QEMUs leave the announcing to the back-end (SEND_RARP).
var announceOff = []string{"-global", "virtio-net-pci.guest_announce=off"}

// migFigures are one data migration's results, for the vhostd/testpmd comparison.
type migFigures struct {
	backend         string
	total, downtime int64
	gap             time.Duration
	sha             string
	fdb             string
	log             string // the destination back-end's log
}

// TestMigration moves a guest between two QEMUs on this host, each with its own back-end,
// both TAPs ports of one bridge that holds the host address, in the scenarios of issue 14
// (README "Live migration").
func TestMigration(t *testing.T) {
	Gate(t)
	start := time.Now()
	var figs []migFigures
	t.Run("data", func(t *testing.T) {
		figs = append(figs, migrateData(t, "vhostd", 1, 1))
	})
	t.Run("device-state", migrateHeldFrames)
	// vhostd --client on both sides, each QEMU listening (libvirt's
	// mode='server'): the same streams and checks as "data".
	t.Run("client", func(t *testing.T) { migrateData(t, "vhostd", 1, 1, "--client", "--reconnect", "100ms") })
	t.Run("announce=off", func(t *testing.T) {
		ctx := Context(t, 3*time.Minute)
		e := newMigEnv(t, ctx, "vhostd", 1)
		o := vmOpts{QEMUArgs: announceOff}
		src := e.start(0, false, o)
		dst := e.start(1, true, o)
		from := len(e.backs[1].Log())
		t0 := e.startMigration(src, dst)
		e.finish(src, dst, t0, e.waitMigration(src, nil))
		m, err := e.backs[1].WaitForFrom(ctx, regexp.MustCompile(`.*announced the guest's MAC \(RARP\).*\n`), from)
		if err != nil {
			t.Fatalf("the destination vhostd did not announce the guest: %v", err)
		}
		t.Logf("destination vhostd: %s", strings.TrimSpace(m[0]))
		e.flowsBothWays(dst, 6000, 2<<20)
	})
	t.Run("queues=2", func(t *testing.T) {
		migrateData(t, "vhostd", 2, 2)
	})
	// Packed rings (issue 18): both streams cross the migration intact
	// and the destination's ring agrees with the base QEMU hands it (else
	// vhostd says so, BAD-INPUTS 76). It cannot tell whether vhostd logs
	// the descriptors it writes back: the guest rewrites the same ring
	// page all the time, so QEMU copies it in the last pass anyway (with
	// that logging removed it still passed); TestDirtyLogCoversEveryWrite
	// (netdev) checks the logging.
	t.Run("packed=on", func(t *testing.T) {
		e := migrateDataOpts(t, "vhostd", 1, vmOpts{CPUs: 1, QEMUArgs: []string{"-global", "virtio-net-pci.packed=on"}})
		if !strings.Contains(e.log, "RING_PACKED") {
			t.Errorf("the destination vhostd's guest did not negotiate RING_PACKED")
		}
		if strings.Contains(e.log, "disagrees with the ring") {
			t.Errorf("the destination's packed ring contradicts the base QEMU gave it")
		}
	})
	t.Run("back-and-forth", func(t *testing.T) {
		ctx := Context(t, 4*time.Minute)
		e := newMigEnv(t, ctx, "vhostd", 1)
		src := e.start(0, false, vmOpts{})
		for i := range 3 {
			dst := e.start(1-src.side, true, vmOpts{})
			t0 := e.startMigration(src, dst)
			e.finish(src, dst, t0, e.waitMigration(src, nil))
			e.flowsBothWays(dst, 6000+10*i, 2<<20)
			src = dst
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx := Context(t, 3*time.Minute)
		e := newMigEnv(t, ctx, "vhostd", 1)
		src := e.start(0, false, vmOpts{})
		dst := e.start(1, true, vmOpts{})
		src.setBandwidth(2 << 20)
		from := len(e.backs[0].Log())
		e.startMigration(src, dst)
		st := e.waitActive(src)
		t.Logf("migrate_cancel after %d KiB of RAM", st.RAM.Transferred>>10)
		if _, err := e.backs[0].WaitForFrom(ctx, regexp.MustCompile(`dirty logging.*on=true`), from); err != nil {
			t.Errorf("source vhostd: %v", err)
		}
		from = len(e.backs[0].Log())
		ping := len(src.g.Log())
		if _, err := src.do("migrate_cancel", nil); err != nil {
			t.Fatal(err)
		}
		st = e.waitMigration(src, nil)
		if st.Status != "cancelled" {
			t.Fatalf("migration %s after migrate_cancel, want cancelled: %s", st.Status, st.ErrorDesc)
		}
		if s := src.status(); s != "running" {
			t.Errorf("source after migrate_cancel: %s, want running", s)
		}
		m, err := e.backs[0].WaitForFrom(ctx, regexp.MustCompile(`.*dirty logging.*on=false.*\n`), from)
		if err != nil {
			t.Fatalf("source vhostd after migrate_cancel: %v", err)
		}
		t.Logf("source vhostd: %s", strings.TrimSpace(m[0]))
		src.waitPings(3, ping)
		e.flowsBothWays(src, 6000, 2<<20)
		e.checkConsole(src)
	})
	t.Run("kill-destination", killDestination)
	t.Run("kill-source", func(t *testing.T) {
		e, src, dst, t0, st := killMidMigration(t, 0)
		t.Logf("source: migration %s (%s), total %d ms, downtime %d ms; source QEMU %s, stderr: %s",
			st.Status, st.ErrorDesc, st.TotalTime, st.Downtime, src.status(), strings.TrimSpace(src.g.QEMULog()))
		switch st.Status {
		case "completed":
			// With a back-end that offers DEVICE_STATE (vhostd) QEMU cannot save its state
			// and fails the migration instead (the "failed" case). Without it QEMU 10
			// completes the migration. On the source the lost back-end set the NIC's
			// link down, and virtio-net migrates its status: the destination guest has no
			// carrier although vhostd B serves it, until set_link n0 on.
			from := len(dst.g.Log())
			dst.waitLost(3, from)
			t.Logf("the destination guest has no network (link down migrated from the source); QMP set_link n0 on")
			dst.setLink(true)
			e.finish(src, dst, t0, st)
			e.flowsBothWays(dst, 6000, 2<<20)
		case "failed":
			from := len(src.g.Log())
			e.startBackend(0)
			e.enslave(0)
			if s := src.status(); s != "running" {
				t.Errorf("source after the failed migration: %s, want running", s)
			}
			src.waitPings(3, from)
			e.flowsBothWays(src, 6000, 2<<20)
			e.checkConsole(src)
		default:
			t.Fatalf("migration %s", st.Status)
		}
	})
	t.Run("testpmd", func(t *testing.T) {
		if _, err := exec.LookPath("dpdk-testpmd"); err != nil {
			// The comparison issue 14 asks for: CI has testpmd (scripts/test.sh
			// installs dpdk-dev for the perf smoke run before go test).
			if os.Getenv("VHOSTD_TEST_PRIVILEGED") == "1" {
				t.Fatalf("dpdk-testpmd not installed (apt-get install dpdk-dev): %v", err)
			}
			t.Skip("reference back-end: dpdk-testpmd not installed (apt-get install dpdk-dev)")
		}
		figs = append(figs, migrateData(t, "testpmd", 1, 1))
	})
	for _, f := range figs {
		t.Logf("%-8s total %5d ms  downtime %4d ms  longest ping gap %5d ms  sha256 both ways: %s  fdb: %s",
			f.backend, f.total, f.downtime, f.gap.Milliseconds(), f.sha, f.fdb)
	}
	t.Logf("migration tests: %.1f s wall time", time.Since(start).Seconds())
}

// migrateData is scenario 1: a stream each way, started before the migration and still
// running at the switchover, both SHA-256 equal on the two ends; the ping gap; the FDB.
func migrateData(t *testing.T, kind string, queues, cpus int, extra ...string) migFigures {
	return migrateDataOpts(t, kind, queues, vmOpts{CPUs: cpus}, extra...)
}

// migrateDataOpts is migrateData with both QEMUs started with o.
func migrateDataOpts(t *testing.T, kind string, queues int, o vmOpts, extra ...string) migFigures {
	ctx := Context(t, 3*time.Minute)
	e := newMigEnv(t, ctx, kind, queues, extra...)
	src := e.start(0, false, o)
	if queues > 1 {
		m, err := src.g.WaitMarker(ctx, "NET eth0 ")
		if err != nil || !strings.Contains(m, "rxqs="+strconv.Itoa(queues)) {
			t.Fatalf("guest eth0: %q (%v), want rxqs=%d", m, err, queues)
		}
	}
	dst := e.start(1, true, o)
	// The guest's /dev/urandom stream is the slow one: start it first, then the host's.
	up := e.startFlow(false, 5001, migUpBytes)
	e.waitMoved(up, 512<<10)
	down := e.startFlow(true, 5002, migDownBytes)
	e.waitMoved(down, 2<<20)
	upAt, downAt := up.moved.Load(), down.moved.Load()
	t0 := e.startMigration(src, dst)
	st := e.waitMigration(src, nil)
	upEnd, downEnd := up.moved.Load(), down.moved.Load()
	upOver, downOver := isClosed(up.done), isClosed(down.done)
	gap := e.finish(src, dst, t0, st)
	t.Logf("streams at migrate: up %.1f MiB, down %.1f MiB (host side); at completed: up %.1f MiB, down %.1f MiB, over: up %v, down %v",
		mib(upAt), mib(downAt), mib(upEnd), mib(downEnd), upOver, downOver)
	if upOver || downOver {
		t.Errorf("a stream was over before the migration completed: the scenario did not move it mid-flight")
	}
	e.checkFlow(up, dst)
	e.checkFlow(down, dst)
	if kind == "vhostd" {
		rarp := strings.Contains(e.backs[1].Log(), "announced the guest's MAC")
		t.Logf("guest_announce on: destination vhostd announced by RARP too: %v", rarp)
		for q, n := range e.logStats(1) {
			if n == 0 {
				t.Errorf("queue pair %d of the destination vhostd moved no packets", q)
			}
		}
	}
	return migFigures{backend: kind, total: st.TotalTime, downtime: st.Downtime, gap: gap,
		sha: fmt.Sprintf("match (%s..., %s...)", up.sha[:12], down.sha[:12]), fdb: "MAC on the destination TAP",
		log: e.backs[1].Log()}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func isDone(g *guest.Guest) bool { return isClosed(g.Done()) }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitMoved waits until the host has moved n bytes of f.
func (e *migEnv) waitMoved(f *migFlow, n int64) {
	e.t.Helper()
	for f.moved.Load() < n {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("flow %v: %d bytes moved: %v", f, f.moved.Load(), e.ctx.Err())
		case <-f.done:
			e.t.Fatalf("flow %v over after %d bytes: %v", f, f.moved.Load(), f.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitPings waits for n answered pings on vm's console after byte offset from.
func (vm *migVM) waitPings(n, from int) {
	vm.e.t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`(PINGOK \d+\n(.*\n)*){%d}`, n))
	if _, err := vm.g.WaitForFrom(vm.e.ctx, re, from); err != nil {
		vm.e.t.Fatalf("%s: no pings answered: %v", vm.name, err)
	}
}

// flowsBothWays moves size bytes each way through vm's guest (ports port and port+1).
func (e *migEnv) flowsBothWays(vm *migVM, port int, size int64) {
	e.t.Helper()
	up := e.startFlow(false, port, size)
	down := e.startFlow(true, port+1, size)
	e.checkFlow(up, vm)
	e.checkFlow(down, vm)
}

// logStats logs vhostd i's per-queue counters (SIGUSR1) and returns rx_packets+tx_packets
// of each queue pair.
func (e *migEnv) logStats(i int) []uint64 {
	e.t.Helper()
	from := len(e.backs[i].Log())
	if err := e.backs[i].Signal(syscall.SIGUSR1); err != nil {
		e.t.Fatalf("SIGUSR1: %v", err)
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^queue %d:.*\n`, e.queues-1))
	if _, err := e.backs[i].WaitForFrom(e.ctx, re, from); err != nil {
		e.t.Fatalf("vhostd counters: %v", err)
	}
	pkts := make([]uint64, e.queues)
	for _, l := range strings.Split(e.backs[i].Log()[from:], "\n") {
		var q int
		if _, err := fmt.Sscanf(l, "queue %d:", &q); err != nil || q >= e.queues {
			continue
		}
		e.t.Logf("destination vhostd %s", l)
		for _, kv := range strings.Fields(l)[2:] {
			k, v, _ := strings.Cut(kv, "=")
			if n, err := strconv.ParseUint(v, 10, 64); err == nil && (k == "rx_packets" || k == "tx_packets") {
				pkts[q] += n
			}
		}
	}
	return pkts
}

// killMidMigration starts a slowed migration from side 0 to side 1 (QEMUs
// with reconnect-ms), SIGKILLs the vhostd of side, lets the migration run
// at full speed and returns once QEMU reports its end.
func killMidMigration(t *testing.T, side int) (*migEnv, *migVM, *migVM, time.Time, migrationStatus) {
	e := newMigEnv(t, Context(t, 3*time.Minute), "vhostd", 1)
	e.maxGap = 0
	o := vmOpts{ReconnectMS: 500}
	src := e.start(0, false, o)
	dst := e.start(1, true, o)
	src.setBandwidth(2 << 20)
	t0 := e.startMigration(src, dst)
	e.waitActive(src)
	e.kill(side)
	t.Logf("%s vhostd SIGKILLed mid-migration", []string{"source", "destination"}[side])
	src.setBandwidth(1 << 30)
	return e, src, dst, t0, e.waitMigration(src, nil)
}

// migrateHeldFrames is the device-state scenario: the source guest is paused (QMP stop: its
// rings stopped), the host sends it a burst of datagrams, which wait in the source's TAP; the
// paused guest migrates and, once the destination continues, every datagram reaches the guest
// (its kernel counts them as UDP NoPorts). They travel in vhostd's device state
// (VHOST_USER_PROTOCOL_F_DEVICE_STATE, README "Live migration"); with any other back-end they
// stay behind in the source's TAP.
func migrateHeldFrames(t *testing.T) {
	const burst = 64
	ctx := Context(t, 3*time.Minute)
	e := newMigEnv(t, ctx, "vhostd", 1)
	e.maxGap = 0 // the guest is paused on purpose
	src := e.start(0, false, vmOpts{})
	dst := e.start(1, true, vmOpts{})
	before := e.udpNoPorts(src)
	// The paused guest cannot answer ARP: the host must not need it to.
	e.ip("neigh", "replace", e.sn.GuestIP(), "lladdr", e.mac, "dev", e.br, "nud", "permanent")
	t.Cleanup(func() { exec.Command("ip", "neigh", "del", e.sn.GuestIP(), "dev", e.br).Run() })
	if _, err := src.do("stop", nil); err != nil {
		t.Fatalf("%s: stop: %v", src.name, err)
	}
	from := [2]int{len(e.backs[0].Log()), len(e.backs[1].Log())}
	e.udpBurst(burst)
	t0 := e.startMigration(src, dst)
	st := e.waitMigration(src, nil)
	if st.Status != "completed" {
		t.Fatalf("migration %s: %s", st.Status, st.ErrorDesc)
	}
	if s := dst.status(); s != "paused" {
		t.Errorf("%s after migrating a paused guest: %s, want paused", dst.name, s)
	}
	if _, err := dst.do("cont", nil); err != nil {
		t.Fatalf("%s: cont: %v", dst.name, err)
	}
	e.finish(src, dst, t0, st)
	for i, dir := range []string{"save", "load"} {
		re := regexp.MustCompile(`.*device state transferred.*direction=` + dir + `.*frames=(\d+).*\n`)
		m, err := e.backs[i].WaitForFrom(ctx, re, from[i])
		if err != nil {
			t.Fatalf("vhostd %s: no device state %s: %v", sideName[i], dir, err)
		}
		t.Logf("vhostd %s: %s", sideName[i], strings.TrimSpace(m[0]))
		if n, _ := strconv.Atoi(m[1]); n < burst {
			t.Errorf("vhostd %s: %s %d frames, want at least the %d datagrams", sideName[i], dir, n, burst)
		}
	}
	got := e.udpNoPorts(dst) - before
	t.Logf("%d datagrams sent to the paused source guest, %d reached the guest on the destination", burst, got)
	if got < burst {
		t.Errorf("%d of %d datagrams reached the guest", got, burst)
	}
}

// killDestination: the destination vhostd is SIGKILLed mid-migration; the guest must survive
// on one side (README "Live migration" in qemu-tests/README.md says which, and why).
func killDestination(t *testing.T) {
	e, src, dst, t0, st := killMidMigration(t, 1)
	t.Logf("source: migration %s (%s), total %d ms, downtime %d ms; destination QEMU exited=%v, stderr: %s",
		st.Status, st.ErrorDesc, st.TotalTime, st.Downtime, isDone(dst.g), strings.TrimSpace(dst.g.QEMULog()))
	switch {
	case st.Status == "completed" && destinationGone(dst):
		// vhostd offers DEVICE_STATE, so the destination QEMU must load vhostd's state
		// before the guest runs there; with vhostd B gone it cannot ("Error loading
		// back-end state") and exits. The source, without a return path, has reported
		// completed and waits in postmigrate with the guest whole: QMP cont resumes it,
		// vhostd A restarts the rings (and delivers the frames it held for the destination).
		if !strings.Contains(dst.g.QEMULog(), "back-end state") {
			t.Errorf("the destination QEMU exited for another reason: %s", dst.g.QEMULog())
		}
		from := len(src.g.Log())
		if _, err := src.do("cont", nil); err != nil {
			t.Fatalf("%s: cont: %v", src.name, err)
		}
		t.Logf("the destination QEMU could not load vhostd's state and exited; cont on the source")
		src.waitPings(3, from)
		e.flowsBothWays(src, 6000, 2<<20)
		e.checkConsole(src)
	case st.Status == "completed":
		// QEMU 10 does not fail the migration: the destination's vhost-user chardev lost
		// its back-end, the guest resumes there without network, and reconnect-ms brings
		// it back once vhostd runs again on the same socket.
		// In about half the runs the guest's pings came back 25-47 s after the restart
		// (0.4-1.5 s otherwise): vhostd B forwards the guest's pings to the TAP and puts
		// the host's ARP requests into the RX ring and signals, but the guest answers
		// none until then. testpmd in vhostd's place does the same (25-49 s in 3 of 6
		// runs). Logged, not bounded: README "Live migration".
		from := len(dst.g.Log())
		dst.waitLost(3, from)
		t.Logf("the destination guest runs without network (pings lost) until vhostd B is back")
		restart := time.Now()
		e.startBackend(1)
		e.enslave(1)
		e.finish(src, dst, t0, st)
		t.Logf("destination guest pings again %.1f s after vhostd B restarted", time.Since(restart).Seconds())
		e.flowsBothWays(dst, 6000, 2<<20)
	case st.Status == "failed":
		if s := src.status(); s != "running" {
			t.Errorf("source after the failed migration: %s, want running", s)
		}
		src.waitPings(3, len(src.g.Log()))
		e.flowsBothWays(src, 6000, 2<<20)
		e.checkConsole(src)
	default:
		t.Fatalf("migration %s", st.Status)
	}
}

// destinationGone waits up to 10 s for the destination QEMU to either run or exit, and
// reports whether it exited.
func destinationGone(dst *migVM) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if isDone(dst.g) {
			return true
		}
		if dst.status() == "running" {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return isDone(dst.g)
}
