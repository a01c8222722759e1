package vhost_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

// Virtio-net feature bits the test device offers (include/uapi/linux/virtio_net.h).
const (
	fCSUM      = 0
	fGuestCSUM = 1
	fMTU       = 3
	fMAC       = 5
	fMrgRxbuf  = 15
	fStatus    = 16
	fCtrlVQ    = 17
	fMQ        = 22
)

const testFeatures = 1<<fCSUM | 1<<fGuestCSUM | 1<<fMTU | 1<<fMAC | 1<<fMrgRxbuf | 1<<fStatus |
	1<<fCtrlVQ | 1<<fMQ | 1<<vhost.FeatRingIndirectDesc | 1<<vhost.FeatRingEventIdx | 1<<vhost.FeatVersion1

// allProto asks for every protocol feature; Negotiate keeps the offered ones.
const allProto = ^uint64(0)

const testVrings = 4

// logBuf is an io.Writer safe for the server's goroutine and the test.
type logBuf struct{ testutil.SyncBuffer }

// hasLine reports whether one line contains every one of subs.
func (l *logBuf) hasLine(subs ...string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func newLogger(w *logBuf, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "vhost", Output: w, Level: level})
}

// uniqueName returns a memfd name nobody else in this process uses.
func uniqueName(prefix string) string {
	return prefix + "-" + testutil.Suffix(16)
}

// harness is one vhost.Server session over a socketpair, with a NullDevice
// and a captured log.
type harness struct {
	t    *testing.T
	dev  *vhosttest.NullDevice
	srv  *vhost.Server
	fe   *vhosttest.FrontEnd
	logs *logBuf
	done chan error
}

func newHarness(t *testing.T) *harness {
	return newHarnessLevel(t, hclog.Debug)
}

func newHarnessLevel(t *testing.T, level hclog.Level) *harness {
	t.Helper()
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	return newHarnessDev(t, level, dev, dev)
}

// newHarnessDev serves dev, whose NullDevice is null (a device that adds
// to a NullDevice embeds it).
func newHarnessDev(t *testing.T, level hclog.Level, dev vhost.Device, null *vhosttest.NullDevice) *harness {
	t.Helper()
	h := &harness{t: t, dev: null, logs: &logBuf{}, done: make(chan error, 1)}
	h.srv = vhost.NewServer(dev, newLogger(h.logs, level))
	fe, be, err := vhosttest.Pair()
	if err != nil {
		t.Fatal(err)
	}
	fe.Name = uniqueName("vt")
	h.fe = fe
	go func() { h.done <- h.srv.ServeConn(context.Background(), be) }()
	t.Cleanup(func() {
		h.fe.Close()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Errorf("server session did not end after the front-end closed")
		}
		h.srv.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs.String())
		}
	})
	return h
}

// negotiate runs the full feature negotiation.
func (h *harness) negotiate() {
	h.t.Helper()
	if err := h.fe.Negotiate(testFeatures, allProto); err != nil {
		h.t.Fatal(err)
	}
}

// start negotiates, sets a 16 MiB memory table at GPA 0 and starts n rings
// of 256.
func (h *harness) start(n int) {
	h.t.Helper()
	if err := h.fe.Start(testFeatures, allProto, n, 256, vhosttest.Layout{Size: 16 << 20}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) state() vhosttest.NullState { return h.dev.State() }

// nack sends req with NEED_REPLY and asserts a failure REPLY_ACK.
func (h *harness) nack(req vhost.Request, payload []byte, fds ...int) {
	h.t.Helper()
	v, err := h.fe.Ack(req, payload, fds...)
	if err != nil {
		h.t.Fatalf("%v: %v", req, err)
	}
	if v == 0 {
		h.t.Fatalf("%v: back-end acked a message it should reject", req)
	}
}

// ack sends req with NEED_REPLY and asserts success.
func (h *harness) ack(req vhost.Request, payload []byte, fds ...int) {
	h.t.Helper()
	if err := h.fe.Request(req, payload, fds...); err != nil {
		h.t.Fatalf("%v: %v", req, err)
	}
}

// closed asserts that the back-end closes the connection and the session
// ends.
func (h *harness) closed() {
	h.t.Helper()
	if err := h.fe.WaitClosed(5 * time.Second); err != nil {
		h.t.Fatalf("connection not closed: %v", err)
	}
	select {
	case <-h.done:
		h.done <- nil // for Cleanup
	case <-time.After(5 * time.Second):
		h.t.Fatalf("session did not end")
	}
}

// closedClean asserts that the back-end closed the connection and that
// the session's teardown left nothing behind in the device: no ring
// running, no memory table. (A closed connection resets the device, so
// "unchanged" is not the test here.)
func (h *harness) closedClean() {
	h.t.Helper()
	h.closed()
	st := h.state()
	if len(st.Running) != 0 || st.Regions != 0 {
		h.t.Fatalf("after the connection closed: %+v", st)
	}
}

// logged asserts a log line naming the request and the field.
func (h *harness) logged(req vhost.Request, field string) {
	h.t.Helper()
	named := func() bool {
		return h.logs.hasLine("request="+req.String(), "field="+field) ||
			h.logs.hasLine(`request="`+req.String()+`"`, "field="+field)
	}
	if !testutil.WaitFor(2*time.Second, 5*time.Millisecond, named) {
		h.t.Fatalf("no log line names request=%v field=%s; log:\n%s", req, field, h.logs.String())
	}
}

// unchanged asserts the device state equals before.
func (h *harness) unchanged(before vhosttest.NullState) {
	h.t.Helper()
	if after := h.state(); !reflect.DeepEqual(before, after) {
		h.t.Fatalf("device state changed by a rejected message:\nbefore %+v\nafter  %+v", before, after)
	}
}

// alive asserts the session still answers.
func (h *harness) alive() {
	h.t.Helper()
	if err := h.fe.Sync(); err != nil {
		h.t.Fatalf("session no longer answers: %v", err)
	}
}

// probe is an fd to send to the back-end whose closing can be observed
// from this side.
type probe struct {
	t      *testing.T
	Fd     int         // the fd to send
	isOpen func() bool // whether any copy of Fd is still open
	done   func()      // releases this side's resources
	ours   bool        // Fd still open on this side
}

// pipeProbe sends the write end of a pipe: once every copy of it is
// closed, the read end sees POLLHUP.
func pipeProbe(t *testing.T) *probe {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	return hupProbe(t, p[1], p[0])
}

// hupProbe sends fd, one end of a pipe or socketpair whose other end is
// peer: once every copy of fd is closed, peer sees POLLHUP.
func hupProbe(t *testing.T, fd, peer int) *probe {
	pr := &probe{t: t, Fd: fd, ours: true}
	pr.isOpen = func() bool {
		pfd := []unix.PollFd{{Fd: int32(peer), Events: unix.POLLIN}}
		n, _ := unix.Poll(pfd, 0)
		return !(n == 1 && pfd[0].Revents&unix.POLLHUP != 0)
	}
	pr.done = func() { unix.Close(peer) }
	t.Cleanup(pr.cleanup)
	return pr
}

// eventfdProbe sends an eventfd, the only kind of fd SET_VRING_KICK, CALL
// and ERR accept: it is closed when no fd of this process is that eventfd
// (the kernel's eventfd-id in /proc/self/fdinfo tells copies apart).
func eventfdProbe(t *testing.T) *probe {
	t.Helper()
	fd, err := vhosttest.NewEventfd()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := vhosttest.EventfdID(fd)
	if !ok {
		unix.Close(fd)
		t.Fatal("the kernel shows no eventfd-id in /proc/self/fdinfo")
	}
	pr := &probe{t: t, Fd: fd, ours: true}
	pr.isOpen = func() bool { return vhosttest.EventfdCopies(id) > 0 }
	pr.done = func() {}
	t.Cleanup(pr.cleanup)
	return pr
}

// memfdProbe sends a memfd of size bytes with a unique name: it is closed
// when no fd and no mapping of that name is left in the process.
func memfdProbe(t *testing.T, size uint64) *probe {
	t.Helper()
	name := uniqueName("probe")
	fd, err := vhosttest.NewMemfd(name, size)
	if err != nil {
		t.Fatal(err)
	}
	pr := &probe{t: t, Fd: fd, ours: true}
	pr.isOpen = func() bool {
		return vhosttest.FdsMatching("/memfd:"+name+" ") > 0 || vhosttest.MapsCount(name) > 0
	}
	pr.done = func() {}
	t.Cleanup(pr.cleanup)
	return pr
}

func (p *probe) cleanup() {
	if p.ours {
		unix.Close(p.Fd)
		p.ours = false
	}
	p.done()
}

// release closes this side's copy of Fd (call after sending it).
func (p *probe) release() {
	if p.ours {
		unix.Close(p.Fd)
		p.ours = false
	}
}

// closedByPeer releases our copy and asserts that the back-end closed (and
// unmapped) its copies within 2 s.
func (p *probe) closedByPeer() {
	p.t.Helper()
	p.release()
	if !waitFor(2*time.Second, func() bool { return !p.isOpen() }) {
		p.t.Fatalf("the back-end kept an fd (or mapping) it was sent")
	}
}

// keptByPeer releases our copy and asserts that the back-end still holds
// the fd.
func (p *probe) keptByPeer() {
	p.t.Helper()
	p.release()
	if !p.isOpen() {
		p.t.Fatalf("the back-end closed an fd it should keep")
	}
}

// waitFor polls cond every 2 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	return testutil.WaitFor(d, 2*time.Millisecond, cond)
}

// u64 is a shorthand for an 8-byte payload.
func u64(v uint64) []byte { return vhosttest.U64(v) }

func vstate(i, n uint32) []byte { return vhosttest.VringState(i, n) }
