package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
)

// QEMU is a qemu-system-x86_64 binary and its version.
type QEMU struct {
	Path         string
	Major, Minor int
	Version      string // the whole first line of --version
}

// MSIXSafe reports whether vhost-user with MSI-X works under TCG. Debian 12's QEMU 7.2
// segfaults in msix_set_vector_notifiers (DESIGN.md, Tests); such a QEMU gets vectors=0.
func (q QEMU) MSIXSafe() bool { return q.Major >= 8 }

var qemuVersion = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)[^\n]*`)

// FindQEMU finds qemu-system-x86_64: $VHOSTD_QEMU if set, else the newest of the one in PATH
// and /usr/bin's (the backports package installs QEMU 10 there).
func FindQEMU() (QEMU, error) {
	if p := os.Getenv("VHOSTD_QEMU"); p != "" {
		return qemuAt(p)
	}
	var cands []string
	if p, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		cands = append(cands, p)
	}
	cands = append(cands, "/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64")
	var best QEMU
	seen := map[string]bool{}
	var errs []error
	for _, p := range cands {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		q, err := qemuAt(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if best.Path == "" || q.Major > best.Major || (q.Major == best.Major && q.Minor > best.Minor) {
			best = q
		}
	}
	if best.Path == "" {
		return QEMU{}, fmt.Errorf("qemu-system-x86_64 not found (run qemu-tests/setup.sh): %w", errors.Join(errs...))
	}
	return best, nil
}

func qemuAt(path string) (QEMU, error) {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return QEMU{}, fmt.Errorf("%s --version: %w", path, err)
	}
	m := qemuVersion.FindSubmatch(out)
	if m == nil {
		return QEMU{}, fmt.Errorf("%s --version: no version in %q", path, out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return QEMU{Path: path, Major: major, Minor: minor, Version: string(m[0])}, nil
}

// CacheDir is where qemu-tests/setup.sh unpacks the guest kernel: $VHOSTD_CACHE/guest, by
// default $HOME/.cache/vhostd/guest. It holds vmlinuz, modules/NAME.ko and VERSION.
func CacheDir() string {
	base := os.Getenv("VHOSTD_CACHE")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			home = "/root"
		}
		base = filepath.Join(home, ".cache", "vhostd")
	}
	return filepath.Join(base, "guest")
}

// CheckCache reports what is missing from the guest kernel cache, or nil.
func CheckCache() error {
	dir := CacheDir()
	need := []string{filepath.Join(dir, "vmlinuz")}
	for _, m := range Modules {
		need = append(need, filepath.Join(dir, "modules", m+".ko"))
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("guest kernel cache incomplete (run qemu-tests/setup.sh): %w", err)
		}
	}
	return nil
}
