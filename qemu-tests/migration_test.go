package qemutests

import (
	"fmt"
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
	migDownBytes = 24 << 20 // host->guest
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
		st := e.waitMigration(src, func(s migrationStatus) bool { return s.final() || s.RAM.Transferred > 4<<20 })
		if st.Status != "active" {
			t.Fatalf("migration %s before migrate_cancel, want active", st.Status)
		}
		if _, err := e.backs[0].WaitForFrom(ctx, regexp.MustCompile(`dirty logging.*on=true`), from); err != nil {
			t.Errorf("source vhostd: %v", err)
		}
		from = len(e.backs[0].Log())
		ping := len(src.g.Log())
		if _, err := src.qmp.do("migrate_cancel", nil); err != nil {
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
	t.Run("testpmd", func(t *testing.T) {
		if _, err := exec.LookPath("dpdk-testpmd"); err != nil {
			t.Skip("optional reference back-end: dpdk-testpmd not installed (apt-get install dpdk-dev)")
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
func migrateData(t *testing.T, kind string, queues, cpus int) migFigures {
	ctx := Context(t, 3*time.Minute)
	e := newMigEnv(t, ctx, kind, queues)
	o := vmOpts{CPUs: cpus}
	src := e.start(0, false, o)
	if queues > 1 {
		m, err := src.g.WaitMarker(ctx, "NET eth0 ")
		if err != nil || !strings.Contains(m, "rxqs="+strconv.Itoa(queues)) {
			t.Fatalf("guest eth0: %q (%v), want rxqs=%d", m, err, queues)
		}
	}
	dst := e.start(1, true, o)
	up := e.startFlow(false, 5001, migUpBytes)
	down := e.startFlow(true, 5002, migDownBytes)
	for up.moved.Load() < 512<<10 || down.moved.Load() < 512<<10 {
		select {
		case <-ctx.Done():
			t.Fatalf("streams did not start: %v up, %v down", up.moved.Load(), down.moved.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	upAt, downAt := up.moved.Load(), down.moved.Load()
	t0 := e.startMigration(src, dst)
	st := e.waitMigration(src, nil)
	upEnd, downEnd := up.moved.Load(), down.moved.Load()
	gap := e.finish(src, dst, t0, st)
	t.Logf("streams at migrate: up %.1f MiB, down %.1f MiB; at completed: up %.1f MiB, down %.1f MiB",
		mib(upAt), mib(downAt), mib(upEnd), mib(downEnd))
	if upEnd >= up.size || downEnd >= down.size {
		t.Errorf("a stream was over before the migration completed: the scenario did not move it mid-flight")
	}
	e.checkFlow(up, dst)
	e.checkFlow(down, dst)
	if kind == "vhostd" {
		rarp := strings.Contains(e.backs[1].Log(), "announced the guest's MAC")
		t.Logf("guest_announce on: destination vhostd announced by RARP too: %v", rarp)
		e.logStats(1)
	}
	return migFigures{backend: kind, total: st.TotalTime, downtime: st.Downtime, gap: gap,
		sha: fmt.Sprintf("match (%s..., %s...)", up.sha[:12], down.sha[:12]), fdb: "MAC on the destination TAP"}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func isDone(g *guest.Guest) bool {
	select {
	case <-g.Done():
		return true
	default:
		return false
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

// logStats logs vhostd i's per-queue counters (SIGUSR1).
func (e *migEnv) logStats(i int) {
	e.t.Helper()
	from := len(e.backs[i].Log())
	if err := e.backs[i].Signal(syscall.SIGUSR1); err != nil {
		e.t.Errorf("SIGUSR1: %v", err)
		return
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^queue %d:.*\n`, e.queues-1))
	if _, err := e.backs[i].WaitForFrom(e.ctx, re, from); err != nil {
		e.t.Errorf("vhostd counters: %v", err)
		return
	}
	for _, l := range strings.Split(e.backs[i].Log()[from:], "\n") {
		if strings.HasPrefix(l, "queue ") {
			e.t.Logf("destination vhostd %s", l)
		}
	}
}
