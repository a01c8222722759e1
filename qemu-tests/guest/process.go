package guest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"time"

	"github.com/vhostd/vhostd/internal/testutil"
)

// Process is a host-side helper process (vhostd, a peer) with its stdout and stderr captured.
type Process struct {
	Name string
	Cmd  *exec.Cmd

	done chan struct{}
	werr error
	out  *output
}

// StartProcess starts path with args. Its output goes to Log (and to tee, when not nil).
// The process gets SIGKILL if the calling program dies.
func StartProcess(name string, tee io.Writer, path string, args ...string) (*Process, error) {
	p := &Process{Name: name, done: make(chan struct{}), out: newOutput(tee)}
	p.Cmd = exec.Command(path, args...)
	p.Cmd.Stdout = p.out
	p.Cmd.Stderr = p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.werr = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Log returns the process's output so far.
func (p *Process) Log() string { return p.out.String() }

// PID is the process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its status if so.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.werr
	default:
		return false, nil
	}
}

// WaitFor waits until the output matches re and returns the submatches.
func (p *Process) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	return p.WaitForFrom(ctx, re, 0)
}

// WaitForFrom is WaitFor on the output from byte offset from on (a len(Log()) taken earlier).
func (p *Process) WaitForFrom(ctx context.Context, re *regexp.Regexp, from int) ([]string, error) {
	// Output is complete once Wait returned (exec copies it before Wait returns).
	m, err := p.out.waitFrom(ctx, re, from, p.done)
	switch {
	case errors.Is(err, errDone):
		return nil, fmt.Errorf("%s: waiting for %q: exited (%v)", p.Name, re, p.werr)
	case err != nil:
		return nil, fmt.Errorf("%s: waiting for %q: %w", p.Name, re, err)
	}
	return m, nil
}

// Signal sends sig to the process (by PID), unless it has exited.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.Cmd.Process.Signal(sig)
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL. It returns the exit status of a
// process that stopped by itself or on SIGTERM (nil for exit 0), or an error saying it had
// to be killed.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.werr
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.werr
	case <-t.C:
	}
	p.Cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", p.Name, p.PID(), grace)
}

// WaitFile waits until path exists (a back-end's socket, a TAP under /sys/class/net), polling
// every 20 ms, or until ctx ends or p (if not nil) exits.
func WaitFile(ctx context.Context, path string, p *Process) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var done <-chan struct{}
	if p != nil {
		done = p.done
	}
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-done:
			return fmt.Errorf("waiting for %s: %s exited (%v)", path, p.Name, p.werr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		}
	}
}

// RandomSuffix returns n random hex digits, for names shared with other sessions on the host
// (TAPs, sockets, namespaces).
func RandomSuffix(n int) string { return testutil.Suffix(n) }

// RandomMAC returns a random 52:54:00:xx:xx:xx address (QEMU's locally administered prefix).
func RandomMAC() string {
	b := make([]byte, 3)
	rand.Read(b)
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}
