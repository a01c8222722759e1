package virtqueue

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestMappedRegionNotDumped: a mapped guest region is marked MADV_DONTDUMP
// (smaps shows "dd" in its VmFlags), so guest RAM never lands in a core
// dump of vhostd.
func TestMappedRegionNotDumped(t *testing.T) {
	fd, err := unix.MemfdCreate("vhostd-dontdump", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, 1<<20); err != nil {
		t.Fatal(err)
	}
	r, err := MapRegion(fd, RegionSpec{GPA: 0, Size: 1 << 20, UserAddr: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&r.mapping[0])))
	flags, err := vmFlags(start)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(" "+flags+" ", " dd ") {
		t.Fatalf("guest region mapping %s... has VmFlags %q, want dd (MADV_DONTDUMP)", start, flags)
	}
}

// vmFlags returns the VmFlags line of the /proc/self/smaps entry whose
// range starts with start ("7f..-").
func vmFlags(start string) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, start) {
			in = true
			continue
		}
		if in && strings.HasPrefix(l, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmFlags:")), nil
		}
	}
	return "", fmt.Errorf("no mapping starting %s in /proc/self/smaps", start)
}
