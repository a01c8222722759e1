package qemutests

// The test domain: the example's vhost-user parts in a TCG, direct-kernel-boot skeleton,
// and what the test reads of the running domain (QEMU's PID and uids).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// Domain is what the test domain is made of.
type Domain struct {
	Name     string
	Example  string // file name in cmd/vhostd/dist/libvirt whose interface and memory are used
	Emulator string // QEMU binary
	Kernel   string
	Initrd   string
	Cmdline  string
	Console  string // file the serial console is written to
	Socket   string // the vhost-user socket path put into the example's interface
	MAC      string
	MemMiB   int
}

// exampleParts are the example's elements the test domain takes over unchanged (but for the
// socket path and the MAC): the shared memory backing, the vhost-user interface and the
// override that gives its device the MTU.
var exampleParts = []*regexp.Regexp{
	regexp.MustCompile(`(?s)\n[ \t]*<memoryBacking>.*?</memoryBacking>`),
	regexp.MustCompile(`(?s)\n[ \t]*<interface type='vhostuser'>.*?</interface>`),
	regexp.MustCompile(`(?s)\n[ \t]*<qemu:override>.*?</qemu:override>`),
}

var (
	sourcePath = regexp.MustCompile(`(<source type='unix' path=')[^']*(')`)
	macAddress = regexp.MustCompile(`(<mac address=')[^']*(')`)
)

// XML builds the test domain: direct kernel boot under TCG with the serial console to a file
// and no other devices, plus the example's memoryBacking and interface elements.
func (d Domain) XML() (string, error) {
	ex, err := os.ReadFile(filepath.Join(libvirtExamples, d.Example))
	if err != nil {
		return "", err
	}
	var parts [3]string
	for i, re := range exampleParts {
		m := re.FindString(string(ex))
		if m == "" {
			return "", fmt.Errorf("%s: no %s", d.Example, re)
		}
		parts[i] = m
	}
	iface := sourcePath.ReplaceAllString(parts[1], "${1}"+d.Socket+"${2}")
	if iface == parts[1] {
		return "", fmt.Errorf("%s: no <source type='unix' path='...'> in the interface", d.Example)
	}
	iface = macAddress.ReplaceAllString(iface, "${1}"+d.MAC+"${2}")
	return fmt.Sprintf(`<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>%s
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%s</emulator>%s
    <serial type='file'>
      <source path='%s'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>%s
</domain>
`, d.Name, d.MemMiB, parts[0], d.Kernel, d.Initrd, d.Cmdline, d.Emulator, iface, d.Console, parts[2]), nil
}

// pidFile is where libvirt keeps the PID of a running domain's QEMU.
func pidFile(domain string) string { return "/run/libvirt/qemu/" + domain + ".pid" }

// followerScript stands in for QEMU in guest.Boot: it prints the domain's console file from
// its start until the domain's QEMU exits, so that the Guest's waits (WaitFor, WaitScript,
// Wait) work on a libvirt domain. Its arguments (QEMU's command line) are ignored.
const followerScript = `#!/bin/sh
# console follower for a libvirt domain (qemu-tests/libvirt.go)
while [ ! -s %[1]q ]; do sleep 0.1; done
exec tail -s 0.2 --pid="$(cat %[1]q)" -n +1 -F %[2]q 2>/dev/null
`

// qemuUID reads the real, effective, saved and filesystem uids of process pid.
func qemuUID(pid int) ([]int, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`).FindStringSubmatch(string(st))
	if m == nil {
		return nil, fmt.Errorf("no Uid line in /proc/%d/status", pid)
	}
	ids := make([]int, 4)
	for i := range ids {
		ids[i], _ = strconv.Atoi(m[i+1])
	}
	return ids, nil
}

// domainPID waits for the domain's QEMU PID file and returns the PID.
func domainPID(ctx context.Context, domain string) (int, error) {
	if err := guest.WaitFile(ctx, pidFile(domain), nil); err != nil {
		return 0, err
	}
	for {
		b, err := os.ReadFile(pidFile(domain))
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			return pid, nil
		}
		select {
		case <-ctx.Done():
			return 0, errors.Join(ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// copyFile copies src to dst with mode perm.
func copyFile(dst, src string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
