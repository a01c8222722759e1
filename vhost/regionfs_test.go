package vhost_test

// Region fds must be on a filesystem whose page faults cannot wait on I/O
// (issue 15): tmpfs/shmem (memfd) or hugetlbfs. A memfd not sealed against
// shrinking is accepted with one warning per session.

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// diskFileProbe is fileProbe made size bytes long, on a filesystem that is
// neither tmpfs nor hugetlbfs (the test's temporary directory, or the
// package directory when that is tmpfs); fsName is that filesystem's
// name as vhostd reports it, "" when no such directory was found.
func diskFileProbe(t *testing.T, size int64) (p *probe, fsName string) {
	t.Helper()
	for _, dir := range []string{t.TempDir(), "."} {
		var fs unix.Statfs_t
		if err := unix.Statfs(dir, &fs); err != nil {
			t.Fatal(err)
		}
		switch uint32(fs.Type) {
		case unix.TMPFS_MAGIC, unix.HUGETLBFS_MAGIC:
			continue
		case unix.EXT4_SUPER_MAGIC:
			fsName = "ext4"
		case unix.OVERLAYFS_SUPER_MAGIC:
			fsName = "overlayfs"
		default:
			fsName = "filesystem 0x"
		}
		if dir == "." {
			d, err := os.MkdirTemp(".", "regionfs")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			dir = d
		}
		p = fileProbeIn(t, dir)
		if err := unix.Ftruncate(p.Fd, size); err != nil {
			t.Fatal(err)
		}
		return p, fsName
	}
	return nil, ""
}

func TestBadInput58RegionFilesystem(t *testing.T) {
	h := newHarness(t)
	h.negotiate()
	rs := regionsAt(2)
	ok, _ := memProbes(t, 1, 1<<20)
	f, fsName := diskFileProbe(t, 1<<20)
	if f == nil {
		t.Skip("no directory outside tmpfs to put a regular file in")
	}
	h.rejectTable("regions[1]", vhosttest.MemTable(rs...), []*probe{ok[0], f}, []int{ok[0].Fd, f.Fd})
	if !h.logs.hasLine("field=regions[1]", "regular file on "+fsName, "tmpfs") {
		t.Fatalf("the refusal does not name the filesystem; log:\n%s", h.logs)
	}
	for _, p := range []*probe{pipeProbe(t), socketProbe(t), eventfdProbe(t)} {
		h.rejectTable("regions[0]", vhosttest.MemTable(rs[0]), []*probe{p}, []int{p.Fd})
	}
	for _, fs := range []string{"pipefs", "sockfs", "anon_inodefs"} {
		if !h.logs.hasLine("field=regions[0]", "on "+fs) {
			t.Fatalf("no refusal names %s; log:\n%s", fs, h.logs)
		}
	}
	t.Run("ADD_MEM_REG", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		if err := h.fe.SetMemTable(vhosttest.Layout{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		f, fsName := diskFileProbe(t, 1<<20)
		before := h.state()
		h.nack(vhost.ReqAddMemReg, vhosttest.MemReg(rs[1]), f.Fd)
		f.closedByPeer()
		h.logged(vhost.ReqAddMemReg, "region")
		if !h.logs.hasLine("request=ADD_MEM_REG", "regular file on "+fsName) {
			t.Fatalf("the refusal does not name the filesystem; log:\n%s", h.logs)
		}
		h.unchanged(before)
	})
	t.Run("hugetlbfs", func(t *testing.T) {
		reserveHugePage(t)
		fd, err := unix.MemfdCreate(uniqueName("huge"), unix.MFD_CLOEXEC|unix.MFD_HUGETLB)
		if err == nil {
			err = unix.Ftruncate(fd, 2<<20)
		}
		if err == nil { // no huge page reserved: mmap fails
			var b []byte
			if b, err = unix.Mmap(fd, 0, 2<<20, unix.PROT_READ, unix.MAP_SHARED); err == nil {
				unix.Munmap(b)
			}
		}
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			privtest.Missing(t, "no hugetlbfs memfd: %v", err)
		}
		defer unix.Close(fd)
		h := newHarness(t)
		h.negotiate()
		h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(vhosttest.RegionDesc{Size: 2 << 20, UserAddr: 1 << 40}), fd)
	})
}

// TestBadInput59UnsealedMemfd: a memfd that can still shrink is accepted
// (QEMU seals its memfds; other front-ends may not) with one warning per
// session, however many regions and tables; a sealed one gets none.
func TestBadInput59UnsealedMemfd(t *testing.T) {
	const warning = "not sealed against shrinking"
	h := newHarness(t)
	h.negotiate()
	for range 3 {
		_, fds := memProbes(t, 2, 1<<20)
		h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(regionsAt(2)...), fds...)
	}
	if n := strings.Count(h.logs.String(), warning); n != 1 {
		t.Fatalf("%d warnings for 6 unsealed memfds in one session, want 1; log:\n%s", n, h.logs)
	}
	if !h.logs.hasLine("[WARN]", warning, "regions[0]") {
		t.Fatalf("the warning does not name the region; log:\n%s", h.logs)
	}
	t.Run("sealed", func(t *testing.T) {
		h := newHarness(t)
		h.negotiate()
		fd, err := unix.MemfdCreate(uniqueName("sealed"), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Ftruncate(fd, 1<<20); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
			t.Fatal(err)
		}
		h.ack(vhost.ReqSetMemTable, vhosttest.MemTable(regionsAt(1)...), fd)
		if strings.Contains(h.logs.String(), warning) {
			t.Fatalf("a sealed memfd was warned about; log:\n%s", h.logs)
		}
	})
}

// reserveHugePage, as root, adds one huge page to the kernel's pool for the
// test (vm.nr_hugepages) and gives it back at cleanup; without root the
// test goes on with what the pool has.
func reserveHugePage(t *testing.T) {
	const knob = "/proc/sys/vm/nr_hugepages"
	b, err := os.ReadFile(knob)
	if err != nil || os.Geteuid() != 0 {
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	if os.WriteFile(knob, []byte(strconv.Itoa(n+1)), 0) == nil {
		t.Cleanup(func() { os.WriteFile(knob, []byte(strconv.Itoa(n)), 0) })
	}
}
