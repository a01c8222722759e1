package vhost_test

// Kick, call and err fds must be eventfds (issue 15): any other kind is
// refused naming the request, the field and what the fd is; and a KICK
// without an fd (polling mode) is refused.

import (
	"path/filepath"
	"testing"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// fileProbe sends a regular file with a unique path: it is closed when no
// fd of this process points at that path.
func fileProbe(t *testing.T) *probe { return fileProbeIn(t, t.TempDir()) }

// fileProbeIn is fileProbe with the file in dir.
func fileProbeIn(t *testing.T, dir string) *probe {
	t.Helper()
	path := filepath.Join(dir, uniqueName("notevent"))
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	pr := &probe{t: t, Fd: fd, ours: true}
	pr.isOpen = func() bool { return vhosttest.FdsMatching(path) > 0 }
	pr.done = func() {}
	t.Cleanup(pr.cleanup)
	return pr
}

// socketProbe sends one end of a socketpair: once every copy of it is
// closed, the other end sees POLLHUP.
func socketProbe(t *testing.T) *probe {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return hupProbe(t, sp[0], sp[1])
}

func TestBadInput56VringFdNotEventfd(t *testing.T) {
	kinds := []struct {
		name  string
		probe func(*testing.T) *probe
	}{
		{"a regular file", fileProbe},
		{"a pipe", pipeProbe},
		{"a socket", socketProbe},
		{"a memfd", func(t *testing.T) *probe { return memfdProbe(t, 4096) }},
	}
	h := newHarnessLevel(t, 0)
	h.start(2)
	// Ring 1 runs with eventfds the test can watch: a refused replacement
	// must leave them in place.
	kept := map[vhost.Request]*probe{}
	for _, req := range []vhost.Request{vhost.ReqSetVringCall, vhost.ReqSetVringErr, vhost.ReqSetVringKick} {
		kept[req] = eventfdProbe(t)
		h.ack(req, u64(1), kept[req].Fd)
	}
	n := 0
	for _, k := range kinds {
		for _, req := range []vhost.Request{vhost.ReqSetVringKick, vhost.ReqSetVringCall, vhost.ReqSetVringErr} {
			p := k.probe(t)
			before := h.state()
			h.nack(req, u64(1), p.Fd)
			p.closedByPeer()
			h.unchanged(before)
			if n++; n <= 10 { // the log is rate-limited to 10 lines a second
				want := "fd is " + k.name
				if !h.logs.hasLine("request="+req.String(), "field=fd", want, "want an eventfd") {
					t.Fatalf("%v with %s: no log line names the request, field=fd, %q and what it wants; log:\n%s", req, k.name, want, h.logs)
				}
			}
		}
	}
	for req, p := range kept {
		if !p.isOpen() {
			t.Fatalf("%v: the ring's eventfd was closed by a refused replacement", req)
		}
	}
	h.alive()
}

// TestBadInput57KickWithoutFd: a KICK with the no-fd flag (polling mode)
// is refused, on a stopped ring and on a running one, whose kick eventfd
// stays.
func TestBadInput57KickWithoutFd(t *testing.T) {
	h := newHarness(t)
	h.start(2)
	kick := eventfdProbe(t)
	h.ack(vhost.ReqSetVringKick, u64(1), kick.Fd)
	kick.keptByPeer()
	before := h.state()
	h.nack(vhost.ReqSetVringKick, u64(1|1<<8))
	h.logged(vhost.ReqSetVringKick, "fd")
	if !h.logs.hasLine("request=SET_VRING_KICK", "polling") {
		t.Fatalf("the refusal does not say why; log:\n%s", h.logs)
	}
	h.unchanged(before)
	if !kick.isOpen() {
		t.Fatal("the running ring's kick eventfd was closed by a refused no-fd kick")
	}
	// A stopped ring is not started by one either.
	if _, err := h.fe.GetVringBase(1); err != nil {
		t.Fatal(err)
	}
	before = h.state()
	h.nack(vhost.ReqSetVringKick, u64(1|1<<8))
	h.unchanged(before)
	// CALL and ERR without an fd stay accepted: they only mean "do not
	// signal".
	h.ack(vhost.ReqSetVringCall, u64(0|1<<8))
	h.ack(vhost.ReqSetVringErr, u64(0|1<<8))
	h.alive()
}
