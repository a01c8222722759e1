package qemutests

// A guest run by libvirt instead of by the harness: libvirtd (the machine's, or one the test
// starts) defines and starts a domain whose NIC is cmd/vhostd/dist/libvirt's example
// interface, and QEMU runs as libvirt's unprivileged user.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// libvirtURI is the system connection: QEMU runs as the user qemu.conf names (Debian:
// libvirt-qemu), not as root.
const libvirtURI = "qemu:///system"

// libvirtQEMUUser is the user Debian's libvirt-daemon-system runs QEMU as.
const libvirtQEMUUser = "libvirt-qemu"

// libvirtExamples is where the example domains live, relative to this package.
const libvirtExamples = "../cmd/vhostd/dist/libvirt"

// virsh runs virsh on the system connection and returns its output.
func virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-c", libvirtURI}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// LibvirtUser is the QEMU user: name, uid and gid.
type LibvirtUser struct {
	Name     string
	UID, GID int
}

// GateLibvirt checks what a libvirt scenario needs on top of Gate: virsh, libvirtd, virtlogd
// (Debian's libvirt-clients, libvirt-daemon, libvirt-daemon-driver-qemu,
// libvirt-daemon-system; qemu-tests/setup.sh installs them) and the user QEMU runs as. It
// makes sure a libvirtd answers on the system socket: the running one, else one the test
// starts (with virtlogd when none runs) and stops at cleanup, by PID.
func GateLibvirt(t *testing.T) (guest.QEMU, LibvirtUser) {
	t.Helper()
	q := Gate(t)
	if !q.MSIXSafe() {
		// libvirt gives the NIC MSI-X vectors; the harness's vectors=0 is not in the example.
		privtest.Missing(t, "QEMU %s segfaults with vhost-user and MSI-X under TCG (DESIGN.md): the libvirt scenario needs QEMU 8 or later (run qemu-tests/setup.sh)", q.Version)
	}
	for _, bin := range []string{"virsh", "libvirtd", "virtlogd"} {
		if _, err := exec.LookPath(bin); err != nil {
			privtest.Missing(t, "no %s (install libvirt: run qemu-tests/setup.sh)", bin)
		}
	}
	u, err := user.Lookup(libvirtQEMUUser)
	if err != nil {
		privtest.Missing(t, "no user %s (install libvirt-daemon-system: run qemu-tests/setup.sh): %v", libvirtQEMUUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	ensureDaemon(t, "virtlogd", "/run/libvirt/virtlogd-sock", nil)
	ensureDaemon(t, "libvirtd", "/run/libvirt/libvirt-sock", func(ctx context.Context) error {
		_, err := virsh(ctx, "version")
		return err
	})
	return q, LibvirtUser{Name: u.Username, UID: uid, GID: gid}
}

// ensureDaemon starts the libvirt daemon bin in the foreground unless something answers on
// its socket (ping, or a plain connect when ping is nil), and waits until it answers. A
// daemon the test started is stopped at cleanup and its log printed.
func ensureDaemon(t *testing.T, bin, sock string, ping func(context.Context) error) {
	t.Helper()
	if ping == nil {
		ping = func(context.Context) error { return dialUnix(sock) }
	}
	ctx := Context(t, 30*time.Second)
	if ping(ctx) == nil {
		t.Logf("%s already answers on %s: using it", bin, sock)
		return
	}
	p, err := guest.StartProcess(bin, nil, bin)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("started %s (pid %d): none answered on %s", bin, p.PID(), sock)
	AddLog(t, bin+" log", p.Log)
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Logf("%s: %v", bin, err)
		}
	})
	for {
		err := ping(ctx)
		if err == nil {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("%s exited: %s", bin, p.Log())
		case <-ctx.Done():
			t.Fatalf("%s does not answer on %s: %v", bin, sock, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dialUnix connects to the unix socket path and closes the connection.
func dialUnix(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// LibvirtConfig is one libvirt scenario.
type LibvirtConfig struct {
	// VhostdListens uses vhostd-listens.xml (libvirt mode='client': vhostd listens, QEMU
	// connects); else vhostd-connects.xml (mode='server': QEMU listens, vhostd --client).
	VhostdListens bool
	// VhostdArgs must agree with the example: --queues, --mtu.
	VhostdArgs []string
	// Script is the guest's script; /etc/vhq.sh is sourced first (GuestFiles).
	Script string
	// MemMiB is the guest's memory (default 256).
	MemMiB int
}

// LibvirtBed is a Bed whose guest is a libvirt domain.
type LibvirtBed struct {
	*Bed
	Domain  Domain
	QEMUPID int
	User    LibvirtUser
	// SocketFlags: vhostd gives its listening socket to QEMU's group itself
	// (--socket-mode 0660 --socket-group GID); without those flags the test chowns it.
	SocketFlags bool
}

// StartLibvirtBed starts libvirt (GateLibvirt), vhostd and a domain made from the example the
// config names, in the order the mode needs, and gives the host its address on vhostd's TAP.
// It fails the test unless QEMU runs as libvirt's QEMU user. The domain is destroyed and
// undefined at cleanup; nothing else in libvirt is touched.
func StartLibvirtBed(t *testing.T, c LibvirtConfig) *LibvirtBed {
	t.Helper()
	q, u := GateLibvirt(t)
	dir := TempDir(t)
	sockDir := filepath.Join(dir, "sock")
	// QEMU, as u, reads the kernel and initramfs and writes the console file in dir; in
	// mode='server' it creates the socket in sockDir.
	must(t, os.Chmod(dir, 0o755), os.Mkdir(sockDir, 0o750))
	b := &Bed{T: t, Ctx: Context(t, 4*time.Minute), Net: Subnet(t), Sock: filepath.Join(sockDir, "net0.sock"), Tap: TapName()}
	lb := &LibvirtBed{Bed: b, User: u, Domain: Domain{
		Name: "vhostd-test-" + guest.RandomSuffix(8), Emulator: q.Path,
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initramfs.cpio"),
		Cmdline: "console=ttyS0 panic=-1 quiet no_timer_check", Console: filepath.Join(dir, "console.log"),
		Socket: b.Sock, MAC: guest.RandomMAC(), MemMiB: max(c.MemMiB, 256), Example: "vhostd-connects.xml",
	}}
	if c.VhostdListens {
		// vhostd (root) makes the socket; QEMU's group may enter the directory.
		lb.Domain.Example = "vhostd-listens.xml"
		must(t, os.Chown(sockDir, 0, u.GID))
	} else {
		must(t, os.Chown(sockDir, u.UID, u.GID))
	}
	follow := filepath.Join(dir, "follow.sh")
	must(t, copyFile(lb.Domain.Kernel, filepath.Join(guest.CacheDir(), "vmlinuz"), 0o644),
		os.WriteFile(follow, []byte(fmt.Sprintf(followerScript, pidFile(lb.Domain.Name), lb.Domain.Console)), 0o755))
	lb.bootFollower(follow, dir, c)
	xml, err := lb.Domain.XML()
	if err != nil {
		t.Fatalf("domain XML: %v", err)
	}
	xmlPath := filepath.Join(dir, "domain.xml")
	must(t, os.WriteFile(xmlPath, []byte(xml), 0o644))
	AddLog(t, "domain XML", func() string { return xml })
	qemuLog := "/var/log/libvirt/qemu/" + lb.Domain.Name + ".log"
	t.Cleanup(func() { os.Remove(qemuLog) }) // after it is printed: cleanups run in reverse
	AddLog(t, "libvirt's QEMU log", func() string {
		s, _ := os.ReadFile(qemuLog)
		return string(s)
	})
	lb.define(xmlPath)
	b.args = append([]string{"--socket-path", b.Sock, "--tap", b.Tap, "--log-level", "debug"}, c.VhostdArgs...)
	if c.VhostdListens {
		if lb.SocketFlags = vhostdHasFlag(t, "socket-group"); lb.SocketFlags {
			b.args = append(b.args, "--socket-mode", "0660", "--socket-group", strconv.Itoa(u.GID))
		}
		lb.startListening()
	} else {
		b.args = append([]string{"--client"}, b.args...)
		lb.startConnecting()
	}
	lb.checkQEMUUser()
	b.waitTap()
	HostAddr(t, b.Tap, b.Net.HostCIDR())
	t.Logf("domain %s: host %s on %s, guest %s", lb.Domain.Name, b.Net.HostCIDR(), b.Tap, b.Net.GuestCIDR())
	return lb
}

// must fails the test on the first error of errs.
func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%v", err)
		}
	}
}

// bootFollower builds the guest's initramfs (dir/initramfs.cpio) with guest.Boot, whose
// "QEMU" is the console follower: the Guest then reads the domain's console.
func (lb *LibvirtBed) bootFollower(follow, dir string, c LibvirtConfig) {
	b := lb.Bed
	g, err := guest.Boot(b.Ctx, guest.Options{
		QEMU: guest.QEMU{Path: follow, Version: "libvirt console follower"}, Dir: dir,
		NIC: &guest.NIC{SocketPath: b.Sock, MAC: lb.Domain.MAC}, GuestIP: b.Net.GuestCIDR(),
		Files: GuestFiles(b.Net, nil), Script: WithLib(c.Script),
	})
	if err != nil {
		b.T.Fatalf("initramfs and console follower: %v", err)
	}
	b.Guest = g
	AddLog(b.T, "guest serial console", g.Log)
	b.T.Cleanup(g.Close)
}

// define defines the domain and registers its removal: destroy (when it still runs) and
// undefine, of this domain only.
func (lb *LibvirtBed) define(xmlPath string) {
	b := lb.Bed
	if _, err := virsh(b.Ctx, "define", xmlPath); err != nil {
		b.T.Fatalf("%v", err)
	}
	name := lb.Domain.Name
	b.T.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if st, _ := virsh(ctx, "domstate", name); strings.TrimSpace(st) != "shut off" {
			if _, err := virsh(ctx, "destroy", name); err != nil {
				b.T.Logf("cleanup: %v", err)
			}
		}
		if _, err := virsh(ctx, "undefine", name); err != nil {
			b.T.Errorf("cleanup: %v", err)
		}
	})
}

// startListening is mode='client': vhostd listens, its socket is handed to QEMU's user,
// then libvirt starts the domain and QEMU connects.
func (lb *LibvirtBed) startListening() {
	b := lb.Bed
	b.Vhostd = StartVhostd(b.T, b.args...)
	if err := guest.WaitFile(b.Ctx, b.Sock, b.Vhostd); err != nil {
		b.T.Fatalf("vhostd socket: %v", err)
	}
	lb.handOverSocket()
	lb.virshStart()
}

// startConnecting is mode='server' in the order the example gives: vhostd --client first
// (it retries every second until QEMU's socket is there), then libvirt starts the domain.
func (lb *LibvirtBed) startConnecting() {
	if runAs() {
		// QEMU's socket belongs to libvirt's user, mode 0755: a vhostd that drops
		// privileges must become a user who may connect, as the README says (restarts
		// too: they reuse the args).
		lb.args = append(slices.Clone(lb.args), "--runas", fmt.Sprintf("%d:%d", lb.User.UID, lb.User.GID))
	}
	lb.Vhostd = StartVhostd(lb.T, lb.args...)
	lb.virshStart()
}

// virshStartTimeout bounds virsh start: it returns once the guest runs, which with
// vhost-user is after QEMU and the back-end have done their handshake (a TCG start takes a
// second or two; a QEMU that cannot reach the socket keeps virsh waiting).
const virshStartTimeout = 90 * time.Second

// virshStart starts the domain.
func (lb *LibvirtBed) virshStart() {
	ctx, cancel := context.WithTimeout(lb.Ctx, virshStartTimeout)
	defer cancel()
	if _, err := virsh(ctx, "start", lb.Domain.Name); err != nil {
		lb.T.Fatalf("%v", err)
	}
}

// checkQEMUUser finds the domain's QEMU and fails the test unless all its uids are the QEMU
// user's and it runs the domain's <emulator>; QEMU's command line is printed with the logs.
func (lb *LibvirtBed) checkQEMUUser() {
	b := lb.Bed
	pid, err := domainPID(b.Ctx, lb.Domain.Name)
	if err != nil {
		b.T.Fatalf("domain %s's QEMU: %v", lb.Domain.Name, err)
	}
	lb.QEMUPID = pid
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != lb.Domain.Emulator {
		b.T.Errorf("QEMU pid %d runs %q (%v), want the <emulator> %s", pid, exe, err, lb.Domain.Emulator)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " ")
	AddLog(b.T, "qemu command line (by libvirt)", func() string { return args })
	ids, err := qemuUID(pid)
	if err != nil {
		b.T.Fatalf("QEMU pid %d: %v", pid, err)
	}
	for _, id := range ids {
		if id != lb.User.UID {
			b.T.Fatalf("QEMU pid %d runs as uids %v, want %s (%d) for all", pid, ids, lb.User.Name, lb.User.UID)
		}
	}
	b.T.Logf("QEMU pid %d runs as %s (uid %d: real, effective, saved, fs)", pid, lb.User.Name, lb.User.UID)
}

// handOverSocket makes sure QEMU, as libvirt's user, can connect to vhostd's listening
// socket. With SocketFlags vhostd made it mode 0660 in QEMU's group, which is checked; else
// vhostd made it as root with the default mode and the test chowns it to QEMU's user.
func (lb *LibvirtBed) handOverSocket() {
	fi, err := os.Stat(lb.Sock)
	must(lb.T, err)
	st := fi.Sys().(*syscall.Stat_t)
	if lb.SocketFlags {
		if fi.Mode().Perm() != 0o660 || int(st.Gid) != lb.User.GID {
			lb.T.Fatalf("vhostd --socket-mode 0660 --socket-group %d made %s %v gid %d", lb.User.GID, lb.Sock, fi.Mode().Perm(), st.Gid)
		}
		lb.T.Logf("vhostd made %s %v uid %d gid %d (--socket-mode, --socket-group)", lb.Sock, fi.Mode().Perm(), st.Uid, st.Gid)
		return
	}
	must(lb.T, os.Chown(lb.Sock, lb.User.UID, lb.User.GID))
	lb.T.Logf("chown %s:%d %s (vhostd made it %v uid %d gid %d; it has no --socket-group)", lb.User.Name, lb.User.GID, lb.Sock, fi.Mode().Perm(), st.Uid, st.Gid)
}

// vhostdHasFlag reports whether vhostd's --help lists the flag name.
func vhostdHasFlag(t *testing.T, name string) bool {
	out, _ := exec.Command(VhostdBinary(t), "--help").CombinedOutput()
	return strings.Contains(string(out), "-"+name+" ")
}

// RestartVhostd SIGKILLs vhostd and starts it again with the same socket and TAP (handing a
// listening socket to QEMU's user again): QEMU reconnects (mode='client' with <reconnect>),
// or vhostd does (--client).
func (lb *LibvirtBed) RestartVhostd(listens bool) {
	lb.Kill()
	lb.Restart()
	if listens {
		lb.handOverSocket()
	}
}
