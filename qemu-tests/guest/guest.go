package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NIC is the guest's vhost-user virtio-net device.
type NIC struct {
	// SocketPath is the vhost-user socket.
	SocketPath string
	// Server makes QEMU listen on SocketPath (server=on,wait=off) and the back-end connect
	// (vhostd --client). By default QEMU connects to a listening back-end.
	Server bool
	// ServerWait, with Server, makes QEMU wait for the back-end before it starts the guest
	// (wait=on): the guest's driver then always probes a connected device.
	ServerWait bool
	// ReconnectMS, when > 0, makes a client QEMU retry a lost connection every that many ms.
	ReconnectMS int
	// QueuePairs is the number of queue pairs (default 1). More than 1 sets mq=on and
	// vectors=2*QueuePairs+2; the guest enables min(vCPUs, QueuePairs) of them by itself.
	QueuePairs int
	// MTU, when > 0, is offered to the guest with host_mtu (VIRTIO_NET_F_MTU).
	MTU int
	// MAC is the guest's MAC; default a random locally administered 52:54:00:xx:xx:xx.
	MAC string
	// RxQueueSize and TxQueueSize, when > 0, set the virtqueue sizes (rx_queue_size,
	// tx_queue_size: powers of 2 up to 1024; QEMU's default is 256). A tx_queue_size above
	// 256 is honoured only with a vhost-user back-end.
	RxQueueSize, TxQueueSize int
	// Packed and InOrder offer the guest packed virtqueues (packed=on, VIRTIO_F_RING_PACKED)
	// and in-order completion (in_order=on, VIRTIO_F_IN_ORDER); the guest gets each only if
	// the back-end offers it too.
	Packed, InOrder bool
}

// Options describe one guest.
type Options struct {
	// QEMU is the binary to use; zero means FindQEMU.
	QEMU QEMU
	// Kernel is the guest kernel; default CacheDir()/vmlinuz.
	Kernel string
	// CPUs (default 1) and MemoryMiB (default 256).
	CPUs, MemoryMiB int
	// MemSlots, when > 0, gives the machine that many DIMM slots for memory hot-add, up to
	// MaxMemoryMiB in all (-m SIZE,slots=N,maxmem=MAX; default MaxMemoryMiB 2048).
	MemSlots, MaxMemoryMiB int
	// QMP, when set, is the path of a QMP socket QEMU listens on
	// (-qmp unix:PATH,server=on,wait=off); DialQMP connects to it.
	QMP string
	// NIC is the vhost-user network device; nil boots without any network device.
	NIC *NIC
	// GuestIP, CIDR ("10.1.2.2/24"), is set on eth0 by /init.
	GuestIP string
	// Script is the test's shell script (busybox sh), run by /init once eth0 is up. Its exit
	// status is printed as "VHOSTD: SCRIPT END rc=N".
	Script string
	// Files are extra files for the initramfs (guest path -> content, mode 0755).
	Files map[string][]byte
	// NoEthtool leaves the host's ethtool out of the initramfs.
	NoEthtool bool
	// KernelArgs are appended to "console=ttyS0 panic=-1 quiet no_timer_check".
	KernelArgs []string
	// QEMUArgs are appended to QEMU's command line.
	QEMUArgs []string
	// KVM uses -accel kvm instead of TCG (off by default: see DESIGN.md).
	KVM bool
	// Reboot lets the guest reboot (no -no-reboot): "reboot -f" restarts the same kernel and
	// initramfs on the same QEMU and the same vhost-user connection. By default a reboot (or a
	// panic) ends QEMU.
	Reboot bool
	// Serial, when set, receives a copy of the guest's serial console as it arrives.
	Serial io.Writer
	// Dir is the working directory for the initramfs and logs; default a new temporary
	// directory, removed by Close.
	Dir string
}

// Guest is a running QEMU.
type Guest struct {
	Opts Options
	MAC  string   // the NIC's MAC, "" without NIC
	Args []string // QEMU's full command line

	cmd    *exec.Cmd
	dir    string
	ownDir bool
	done   chan struct{} // closed when QEMU has exited and its output is drained
	werr   error         // QEMU's exit status, valid after done

	serial *output // console output, "\r" removed
	stderr *output // QEMU's own messages
}

// Boot builds the initramfs and starts QEMU. QEMU is killed (by PID) when ctx ends; the
// caller must Close the guest.
func Boot(ctx context.Context, o Options) (*Guest, error) {
	if o.QEMU.Path == "" {
		q, err := FindQEMU()
		if err != nil {
			return nil, err
		}
		o.QEMU = q
	}
	if o.Kernel == "" {
		o.Kernel = filepath.Join(CacheDir(), "vmlinuz")
	}
	if o.CPUs <= 0 {
		o.CPUs = 1
	}
	if o.MemoryMiB <= 0 {
		o.MemoryMiB = 256
	}
	g := &Guest{Opts: o, done: make(chan struct{}), serial: newOutput(o.Serial), stderr: newOutput(nil)}
	g.dir = o.Dir
	if g.dir == "" {
		d, err := os.MkdirTemp("", "vhostd-guest-")
		if err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
		g.dir, g.ownDir = d, true
	}
	initrd := filepath.Join(g.dir, "initramfs.cpio")
	ir := Initramfs{Script: o.Script, Net: o.NIC != nil, GuestIP: o.GuestIP, Ethtool: !o.NoEthtool, Files: o.Files}
	if err := ir.Build(initrd); err != nil {
		g.removeDir()
		return nil, fmt.Errorf("boot: %w", err)
	}
	if o.NIC != nil {
		g.MAC = o.NIC.MAC
		if g.MAC == "" {
			g.MAC = RandomMAC()
		}
	}
	g.Args = g.qemuArgs(initrd)
	g.cmd = exec.Command(o.QEMU.Path, g.Args...)
	g.cmd.Stdin = nil
	g.cmd.Stderr = g.stderr
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		g.removeDir()
		return nil, fmt.Errorf("boot: %w", err)
	}
	if err := g.cmd.Start(); err != nil {
		g.removeDir()
		return nil, fmt.Errorf("boot: start %s: %w", o.QEMU.Path, err)
	}
	stop := context.AfterFunc(ctx, func() { g.cmd.Process.Kill() })
	go func() {
		g.read(out)
		stop()
	}()
	return g, nil
}

func (g *Guest) qemuArgs(initrd string) []string {
	o := g.Opts
	accel := "tcg,thread=multi"
	if o.KVM {
		accel = "kvm"
	}
	// no_timer_check: under TCG on a loaded host the IO-APIC timer check
	// can miss its window and panic the guest in setup_IO_APIC.
	appendLine := strings.Join(append([]string{"console=ttyS0", "panic=-1", "quiet", "no_timer_check"}, o.KernelArgs...), " ")
	mem := strconv.Itoa(o.MemoryMiB)
	if o.MemSlots > 0 {
		maxMem := o.MaxMemoryMiB
		if maxMem <= 0 {
			maxMem = 2048
		}
		mem = fmt.Sprintf("%dM,slots=%d,maxmem=%dM", o.MemoryMiB, o.MemSlots, maxMem)
	}
	a := []string{
		"-nodefaults", "-accel", accel,
		"-m", mem, "-smp", strconv.Itoa(o.CPUs),
		"-display", "none", "-monitor", "none",
	}
	if o.QMP != "" {
		a = append(a, "-qmp", "unix:"+o.QMP+",server=on,wait=off")
	}
	if !o.Reboot {
		a = append(a, "-no-reboot")
	}
	a = append(a,
		"-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", o.MemoryMiB),
		"-machine", "pc,memory-backend=mem",
		"-kernel", o.Kernel, "-initrd", initrd, "-append", appendLine,
	)
	if n := o.NIC; n != nil {
		qp := n.QueuePairs
		if qp <= 0 {
			qp = 1
		}
		chr := "socket,id=c0,path=" + n.SocketPath
		if n.Server && n.ServerWait {
			chr += ",server=on,wait=on"
		} else if n.Server {
			chr += ",server=on,wait=off"
		} else if n.ReconnectMS > 0 {
			chr += ",reconnect-ms=" + strconv.Itoa(n.ReconnectMS)
		}
		dev := "virtio-net-pci,netdev=n0,mac=" + g.MAC + ",romfile="
		switch {
		case !o.QEMU.MSIXSafe():
			dev += ",vectors=0"
			if qp > 1 {
				dev += ",mq=on"
			}
		case qp > 1:
			dev += fmt.Sprintf(",mq=on,vectors=%d", 2*qp+2)
		}
		if n.MTU > 0 {
			dev += ",host_mtu=" + strconv.Itoa(n.MTU)
		}
		if n.RxQueueSize > 0 {
			dev += ",rx_queue_size=" + strconv.Itoa(n.RxQueueSize)
		}
		if n.TxQueueSize > 0 {
			dev += ",tx_queue_size=" + strconv.Itoa(n.TxQueueSize)
		}
		if n.Packed {
			dev += ",packed=on"
		}
		if n.InOrder {
			dev += ",in_order=on"
		}
		a = append(a, "-chardev", chr,
			"-netdev", fmt.Sprintf("vhost-user,id=n0,chardev=c0,queues=%d", qp),
			"-device", dev)
	}
	return append(a, o.QEMUArgs...)
}

// read copies QEMU's stdout (the serial console) into g.serial until EOF, then reaps QEMU.
func (g *Guest) read(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			g.serial.Write(bytes.ReplaceAll(buf[:n], []byte("\r"), nil))
		}
		if err != nil {
			break
		}
	}
	g.werr = g.cmd.Wait()
	os.WriteFile(filepath.Join(g.dir, "serial.log"), []byte(g.Log()), 0o644)
	close(g.done)
}

// ErrExited is returned by WaitFor when QEMU exits before the pattern appears.
var ErrExited = errors.New("qemu exited")

// WaitFor waits until the serial log matches re anywhere and returns the first match's
// submatches. It fails when ctx ends or QEMU exits first; the error has the log's tail.
// Output arrives in pieces: a pattern that captures to the end of a line should end in \n
// (as WaitMarker's does), or it may match a line that is still being written.
func (g *Guest) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	return g.WaitForFrom(ctx, re, 0)
}

// WaitForFrom is WaitFor on the serial log from byte offset from on (a len(Log()) taken
// earlier): it finds only what the guest printed after that point.
func (g *Guest) WaitForFrom(ctx context.Context, re *regexp.Regexp, from int) ([]string, error) {
	m, err := g.serial.waitFrom(ctx, re, from, g.done)
	switch {
	case errors.Is(err, errDone):
		return nil, fmt.Errorf("waiting for %q: %w (%v); %s", re, ErrExited, g.werr, g.tail())
	case err != nil:
		return nil, fmt.Errorf("waiting for %q: %w; %s", re, err, g.tail())
	}
	return m, nil
}

// WaitMarker waits for the marker line "VHOSTD: <what>..." and returns the rest of that line
// after what.
func (g *Guest) WaitMarker(ctx context.Context, what string) (string, error) {
	m, err := g.WaitFor(ctx, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(Marker+what)+`(.*)\n`))
	if err != nil {
		return "", err
	}
	return m[1], nil
}

var scriptEnd = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(Marker) + `SCRIPT END rc=(\d+)\D`)

// WaitScript waits for the test script to finish and returns its exit status.
func (g *Guest) WaitScript(ctx context.Context) (int, error) {
	m, err := g.WaitFor(ctx, scriptEnd)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(m[1])
}

// Log returns the serial console output so far.
func (g *Guest) Log() string { return g.serial.String() }

// QEMULog returns what QEMU itself wrote to stderr.
func (g *Guest) QEMULog() string { return g.stderr.String() }

func (g *Guest) tail() string {
	const max = 3000
	s := g.Log()
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	q := g.QEMULog()
	if q != "" {
		return fmt.Sprintf("qemu stderr:\n%s\nserial tail:\n%s", q, s)
	}
	return "serial tail:\n" + s
}

// PID is QEMU's process id.
func (g *Guest) PID() int { return g.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Wait waits for QEMU to exit (the guest powers off after its script) and returns its exit
// status, or ctx's error.
func (g *Guest) Wait(ctx context.Context) error {
	select {
	case <-g.done:
		return g.werr
	case <-ctx.Done():
		return fmt.Errorf("waiting for qemu to exit: %w; %s", ctx.Err(), g.tail())
	}
}

// Kill sends SIGKILL to QEMU (by PID) and waits for it to be reaped.
func (g *Guest) Kill() {
	select {
	case <-g.done:
		return
	default:
	}
	g.cmd.Process.Kill()
	<-g.done
}

// Close kills QEMU if it still runs and removes the working directory if Boot made it.
func (g *Guest) Close() {
	g.Kill()
	g.removeDir()
}

func (g *Guest) removeDir() {
	if g.ownDir {
		os.RemoveAll(g.dir)
	}
}

// Dir is the guest's working directory (initramfs.cpio; serial.log once QEMU has exited).
func (g *Guest) Dir() string { return g.dir }

// Command returns QEMU's command line as one shell-like string, for logs.
func (g *Guest) Command() string {
	return g.Opts.QEMU.Path + " " + strings.Join(g.Args, " ")
}

// BootTimeout is a generous bound for a boot to reach the test script: a TCG boot takes
// about 3 s on an idle 2-core box and 10 s or more on a busy one.
const BootTimeout = 120 * time.Second
