package guest

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Modules are the kernel modules /init loads, in this order (each needs the ones before it).
var Modules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// Marker starts every line the guest's /init prints for the harness:
//
//	VHOSTD: INIT kernel=6.1.0-56-cloud-amd64 cpus=1 t=1.23
//	VHOSTD: NET eth0 mac=52:54:00:12:34:56 mtu=1500 carrier=1 rxqs=1 t=2.34
//	VHOSTD: SCRIPT BEGIN t=2.35
//	... the test script's output ...
//	VHOSTD: SCRIPT END rc=0 t=3.45
//	VHOSTD: POWEROFF t=3.45
const Marker = "VHOSTD: "

//go:embed init.sh
var initScript []byte

// Initramfs says what goes into the guest's initramfs besides busybox and /init.
type Initramfs struct {
	// Busybox is a statically linked busybox; default /bin/busybox (Debian's busybox-static).
	Busybox string
	// ModulesDir holds Modules as uncompressed NAME.ko files; default CacheDir()/modules.
	ModulesDir string
	// Script is run by /init (with busybox sh) after the network is up.
	Script string
	// Net tells /init to wait for eth0, bring it up and print its NET line.
	Net bool
	// GuestIP, in CIDR form ("10.1.2.2/24"), is added to eth0 when set.
	GuestIP string
	// Ethtool copies the host's ethtool and its shared libraries (found with ldd) into the
	// guest when true. Missing ethtool on the host is not an error: the guest just lacks it.
	Ethtool bool
	// Files are extra files (path inside the guest -> content), created mode 0755.
	Files map[string][]byte
}

// Build writes the initramfs as an uncompressed newc cpio archive to path.
func (c Initramfs) Build(path string) error {
	if c.Busybox == "" {
		c.Busybox = "/bin/busybox"
	}
	if c.ModulesDir == "" {
		c.ModulesDir = filepath.Join(CacheDir(), "modules")
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := newCpioWriter(bw)
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "lib", "lib/modules", "lib64", "lib/x86_64-linux-gnu"} {
		w.dir(d, 0o755)
	}
	w.chardev("dev/console", 0o600, 5, 1)
	w.chardev("dev/null", 0o666, 1, 3)
	if err := w.hostFile("bin/busybox", c.Busybox, 0o755); err != nil {
		f.Close()
		return fmt.Errorf("initramfs: busybox (install busybox-static): %w", err)
	}
	w.file("init", initScript, 0o755)
	w.file("test.sh", []byte(c.Script), 0o755)
	w.file("etc/vhostd-guest.conf", []byte(c.conf()), 0o644)
	for _, m := range Modules {
		if err := w.hostFile("lib/modules/"+m+".ko", filepath.Join(c.ModulesDir, m+".ko"), 0o644); err != nil {
			f.Close()
			return fmt.Errorf("initramfs: module %s (run qemu-tests/setup.sh): %w", m, err)
		}
	}
	if c.Ethtool {
		if err := addEthtool(w); err != nil {
			f.Close()
			return fmt.Errorf("initramfs: ethtool: %w", err)
		}
	}
	names := make([]string, 0, len(c.Files))
	for n := range c.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w.file(strings.TrimPrefix(n, "/"), c.Files[n], 0o755)
	}
	w.trailer()
	if w.err == nil {
		w.err = bw.Flush()
	}
	if err := f.Close(); w.err == nil {
		w.err = err
	}
	if w.err != nil {
		return fmt.Errorf("initramfs: %w", w.err)
	}
	return nil
}

func (c Initramfs) conf() string {
	var b strings.Builder
	net := 0
	if c.Net {
		net = 1
	}
	fmt.Fprintf(&b, "NET=%d\n", net)
	fmt.Fprintf(&b, "GUEST_IP=%s\n", shellQuote(c.GuestIP))
	fmt.Fprintf(&b, "MODULES=%s\n", shellQuote(strings.Join(Modules, " ")))
	return b.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lddPath matches the library paths in ldd's output: "libc.so.6 => /lib/.../libc.so.6 (0x...)"
// and "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddPath = regexp.MustCompile(`(?m)(?:=>\s+|^\s+)(/\S+)\s+\(0x`)

// addEthtool copies the host's ethtool into /sbin with every library ldd lists, at the same
// paths (the dynamic loader included), so the guest can run "ethtool -L eth0 combined N".
func addEthtool(w *cpioWriter) error {
	bin, err := exec.LookPath("ethtool")
	if err != nil {
		for _, p := range []string{"/usr/sbin/ethtool", "/sbin/ethtool"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil // not on the host: the guest goes without
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", bin, err)
	}
	if err := w.hostFile("sbin/ethtool", bin, 0o755); err != nil {
		return err
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		p := filepath.Clean(m[1])
		for _, d := range parents(p) {
			w.dir(d, 0o755)
		}
		if err := w.hostFile(strings.TrimPrefix(p, "/"), p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// parents returns the directories above p ("/a/b/c" -> "a", "a/b"), without the leading slash.
func parents(p string) []string {
	var ds []string
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		ds = append([]string{strings.TrimPrefix(d, "/")}, ds...)
	}
	return ds
}

// cpioWriter writes a newc ("070701") cpio archive, the format the kernel unpacks as
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst). The first error
// sticks in err and later writes do nothing. Directories already written are skipped.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{}}
}

func (c *cpioWriter) dir(name string, perm uint32) {
	if c.dirs[name] {
		return
	}
	c.dirs[name] = true
	c.entry(name, cpioDir|perm, 0, 0, nil)
}

func (c *cpioWriter) file(name string, data []byte, perm uint32) {
	c.entry(name, cpioReg|perm, 0, 0, data)
}

func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, cpioLink|0o777, 0, 0, []byte(target))
}

func (c *cpioWriter) chardev(name string, perm, major, minor uint32) {
	c.entry(name, cpioChr|perm, major, minor, nil)
}

// hostFile copies the host file src (symlinks followed) to name.
func (c *cpioWriter) hostFile(name, src string, perm uint32) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	c.file(name, data, perm)
	return nil
}

func (c *cpioWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) {
	if c.err != nil {
		return
	}
	nlink := uint32(1)
	if mode&cpioDir != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.ino++
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, pad4(len(buf))...)
	if _, err := c.w.Write(buf); err != nil {
		c.err = err
		return
	}
	if _, err := c.w.Write(data); err != nil {
		c.err = err
		return
	}
	_, c.err = c.w.Write(pad4(len(data)))
}

func (c *cpioWriter) trailer() {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
}

func pad4(n int) []byte {
	return make([]byte, (4-n%4)%4)
}
