package xdptap

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/tap"
)

// count and count-drop count frames and bytes per TAP queue; count passes them to the
// host stack, count-drop drops them.
func TestCount(t *testing.T) {
	for _, m := range []Mode{ModeCount, ModeCountDrop} {
		t.Run(m.String(), func(t *testing.T) {
			d, _ := newTAP(t, 2)
			a := attach(t, d.Ifindex(), Config{Mode: m})
			f := rawFrame(guestMAC, hostMAC, "count")
			for i := 0; i < 3; i++ {
				write(t, d.Queue(0), f)
			}
			for i := 0; i < 5; i++ {
				write(t, d.Queue(1), f, f)
			}
			got := waitCounters(t, a, func(c map[string]uint64) bool { return c["xdp_q1_packets"] >= 10 })
			want := map[string]uint64{
				"xdp_q0_packets": 3, "xdp_q0_bytes": 3 * uint64(len(f)),
				"xdp_q1_packets": 10, "xdp_q1_bytes": 10 * uint64(len(f)),
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("counters %v, want %v", got, want)
			}
		})
	}
}

// reflect returns every frame written on the TAP's fd to the TAP's readers.
func TestReflect(t *testing.T) {
	d, _ := newTAP(t, 1)
	a := attach(t, d.Ifindex(), Config{Mode: ModeReflect})
	var frames [][]byte
	for i := 0; i < 8; i++ {
		frames = append(frames, rawFrame(guestMAC, hostMAC, fmt.Sprintf("reflect-%d", i)))
	}
	write(t, d.Queue(0), frames...)
	got := testFrames(read(t, d.Queue(0), len(frames), 5*time.Second), "reflect-")
	if len(got) != len(frames) {
		t.Fatalf("read back %d of %d frames; counters %v", len(got), len(frames), counters(t, a))
	}
	for i, f := range got {
		if string(f) != string(frames[i]) {
			t.Errorf("frame %d came back as %x, want %x", i, f, frames[i])
		}
	}
	if c := counters(t, a); c["xdp_q0_packets"] != uint64(len(frames)) {
		t.Errorf("counters %v", c)
	}
}

// switch moves a frame for another local guest's MAC from one TAP into the other's,
// and leaves the rest to the host stack.
func TestSwitch(t *testing.T) {
	requireXDP(t)
	privtest.NetNS(t)
	a, b := openTAP(t, 1), openTAP(t, 1)
	sw, err := OpenSwitch(SwitchConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.AddPort(a.Ifindex(), guestMAC); err != nil {
		t.Fatal(err)
	}
	if err := sw.AddPort(b.Ifindex(), otherMAC); err != nil {
		t.Fatal(err)
	}
	xa := attach(t, a.Ifindex(), Config{Mode: ModeSwitch, Switch: sw})
	xb := attach(t, b.Ifindex(), Config{Mode: ModeSwitch, Switch: sw})

	write(t, a.Queue(0), rawFrame(guestMAC, otherMAC, "a-to-b"), rawFrame(guestMAC, hostMAC, "a-to-host"))
	write(t, b.Queue(0), rawFrame(otherMAC, guestMAC, "b-to-a"))
	if got := testFrames(read(t, b.Queue(0), 1, 5*time.Second), "a-to-"); len(got) != 1 || !strings.HasPrefix(string(got[0][14:]), "a-to-b") {
		t.Errorf("b read %q, want the one frame a-to-b", got)
	}
	if got := testFrames(read(t, a.Queue(0), 1, 5*time.Second), "b-to-a"); len(got) != 1 {
		t.Errorf("a read %d frames b-to-a, want 1", len(got))
	}
	c := counters(t, xa)
	if c["xdp_switch_redirected"] != 2 || c["xdp_switch_passed"] != 1 {
		t.Errorf("switch counters %v, want 2 redirected, 1 passed", c)
	}
	if fmt.Sprint(counters(t, xb)) != fmt.Sprint(c) {
		t.Errorf("the switch's counters differ between its ports")
	}

	// Removing b's port makes frames for b's MAC pass to the host stack.
	if err := sw.RemovePort(b.Ifindex()); err != nil {
		t.Fatal(err)
	}
	write(t, a.Queue(0), rawFrame(guestMAC, otherMAC, "a-to-gone"))
	if got := testFrames(read(t, b.Queue(0), 1, 300*time.Millisecond), "a-to-gone"); len(got) != 0 {
		t.Errorf("b still gets frames after RemovePort")
	}
	if c := counters(t, xa); c["xdp_switch_passed"] != 2 {
		t.Errorf("switch counters %v after RemovePort", c)
	}
}

func TestSwitchPortRejected(t *testing.T) {
	requireXDP(t)
	sw, err := OpenSwitch(SwitchConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.AddPort(1, net.HardwareAddr{1, 0, 0, 0, 0, 1}); err == nil {
		t.Error("AddPort took a multicast MAC")
	}
	if err := sw.AddPort(0, guestMAC); err == nil {
		t.Error("AddPort took ifindex 0")
	}
	sw.Close()
	if err := sw.AddPort(1, guestMAC); err == nil {
		t.Error("AddPort after Close succeeded")
	}
	if _, err := Attach(1, Config{Mode: ModeSwitch, Switch: sw}); err == nil {
		t.Error("Attach with a closed switch succeeded")
	}
}

// A user's own object loads and runs.
func TestObject(t *testing.T) {
	d, _ := newTAP(t, 1)
	a := attach(t, d.Ifindex(), Config{Mode: ModeObject, ObjectFile: "testdata/user.o", ProgramName: "user_drop_88b5"})
	if a.Mode() != AttachNative {
		t.Errorf("Mode() = %v", a.Mode())
	}
	write(t, d.Queue(0), rawFrame(guestMAC, hostMAC, "user"), rawFrame(guestMAC, hostMAC, "user"), rawFrame(guestMAC, hostMAC, "user"))
	var hits uint64
	if err := a.Map("hits").Lookup(uint32(0), &hits); err != nil || hits != 3 {
		t.Fatalf("hits = %d, %v; want 3", hits, err)
	}
	if c := counters(t, a); len(c) != 0 {
		t.Errorf("object counters %v, want none", c)
	}
}

// Load failures are reported in plain words; a verifier rejection carries the
// verifier's own message.
func TestObjectRejected(t *testing.T) {
	d, _ := newTAP(t, 1)
	cases := []struct {
		name, file, prog string
		want             []string
	}{
		{"verifier", "testdata/broken.o", "broken_unchecked_read", []string{"verifier rejected", "broken_unchecked_read", "invalid access to packet"}},
		{"not xdp", "testdata/user.o", "user_socket", []string{"not XDP", "user_drop_88b5"}},
		{"no such program", "testdata/user.o", "nope", []string{`no program "nope"`, "user_drop_88b5"}},
		{"no such file", "testdata/missing.o", "x", []string{"no such file"}},
		{"not an object", "testdata/user.c", "x", []string{"not a BPF object"}},
	}
	for _, c := range cases {
		a, err := Attach(d.Ifindex(), Config{Mode: ModeObject, ObjectFile: c.file, ProgramName: c.prog})
		if err == nil {
			a.Close()
			t.Errorf("%s: Attach succeeded", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		if c.name == "verifier" {
			var ve *VerifierError
			if !errors.As(err, &ve) || len(ve.Log) == 0 {
				t.Errorf("verifier: error %T is not a *VerifierError with a log", err)
			}
			t.Logf("%v", err)
		}
	}
	// With no name, the object's only XDP program is used.
	a := attach(t, d.Ifindex(), Config{Mode: ModeObject, ObjectFile: "testdata/user.o"})
	if a.String() != fmt.Sprintf("user_drop_88b5 native on ifindex %d", d.Ifindex()) {
		t.Errorf("String() = %q", a)
	}
}

// The attach mode is the one asked for, or an error: never a silent fallback.
func TestAttachModes(t *testing.T) {
	d, ns := newTAP(t, 1)
	a := attach(t, d.Ifindex(), Config{Mode: ModeCount, Attach: AttachGeneric})
	if a.Mode() != AttachGeneric {
		t.Fatalf("Mode() = %v, want generic", a.Mode())
	}
	write(t, d.Queue(0), rawFrame(guestMAC, hostMAC, "generic"))
	if c := waitCounters(t, a, func(c map[string]uint64) bool { return c["xdp_q0_packets"] == 1 }); c["xdp_q0_packets"] != 1 {
		t.Errorf("generic count: %v", c)
	}
	// A second program on the same device is refused, in words.
	if b, err := Attach(d.Ifindex(), Config{Mode: ModeCount}); err == nil {
		b.Close()
		t.Error("a second attach succeeded")
	} else if !strings.Contains(err.Error(), d.Name()) || !strings.Contains(err.Error(), "native mode") {
		t.Errorf("second attach: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// A device without native XDP (a bridge) fails in native mode and says so; no fallback.
	dummy := "vxb" + testutil.Suffix(8)
	if out, err := privtest.TryIP(ns, "link", "add", dummy, "type", "bridge"); err != nil {
		privtest.Missing(t, "cannot create a bridge: %v: %s", err, out)
	}
	ifi, err := net.InterfaceByName(dummy)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Attach(ifi.Index, Config{Mode: ModeCount})
	if err == nil || !strings.Contains(err.Error(), "native mode") || !strings.Contains(err.Error(), "not falling back") {
		t.Fatalf("native attach on dummy: %v", err)
	}
	t.Logf("%v", err)
	if _, err := Attach(ifi.Index, Config{Mode: ModeCount, Macvtap: true, Attach: AttachNative}); err == nil {
		t.Fatal("native on macvtap accepted")
	}
	if _, err := Attach(d.Ifindex(), Config{}); err == nil {
		t.Fatal("mode off accepted")
	}
}

// On a macvtap the auto mode is generic. Frames the guest writes into a macvtap leave
// through the lower device's transmit path and never reach the macvtap's XDP hook, which
// sees frames arriving for the guest instead; so the guard, reflect and switch, which
// exist for guest-sent frames, are refused there.
func TestMacvtap(t *testing.T) {
	requireXDP(t)
	_, mvt, peer := privtest.Macvtap(t, "vx", guestMAC)
	d, err := tap.OpenMacvtap(tap.Config{Name: mvt, Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := attach(t, d.Ifindex(), Config{Mode: ModeCount, Macvtap: true})
	if a.Mode() != AttachGeneric {
		t.Fatalf("Mode() = %v, want generic", a.Mode())
	}
	write(t, d.Queue(0), rawFrame(guestMAC, hostMAC, "from-guest"))
	time.Sleep(100 * time.Millisecond)
	if c := counters(t, a); c["xdp_q0_packets"] != 0 {
		t.Errorf("this kernel runs macvtap's XDP on guest-sent frames (%v): revisit the guard's macvtap refusal", c)
	}
	// A frame for the guest, sent into the veth peer, is seen.
	pi, err := net.InterfaceByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, rawFrame(hostMAC, guestMAC, "to-guest"), 0, &unix.SockaddrLinklayer{Ifindex: pi.Index, Halen: 6}); err != nil {
		t.Fatal(err)
	}
	if c := waitCounters(t, a, func(c map[string]uint64) bool { return c["xdp_q0_packets"] == 1 }); c["xdp_q0_packets"] != 1 {
		t.Errorf("a frame for the guest was not counted: %v", c)
	}
	for _, m := range []Mode{ModeGuard, ModeReflect, ModeSwitch} {
		if b, err := Attach(d.Ifindex(), Config{Mode: m, Macvtap: true, Guard: guestGuard()}); err == nil {
			b.Close()
			t.Errorf("%v on a macvtap accepted", m)
		} else if !strings.Contains(err.Error(), "macvtap") {
			t.Errorf("%v on a macvtap: %v", m, err)
		}
	}
}

// Two switches opened on the same pin path (two vhostd processes) share their ports.
func TestSwitchPinned(t *testing.T) {
	requireXDP(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		privtest.Missing(t, "mount a BPF filesystem on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	s1, err := OpenSwitch(SwitchConfig{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := OpenSwitch(SwitchConfig{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.AddPort(lo.Index, guestMAC); err != nil {
		t.Fatal(err)
	}
	var ifindex uint32
	if err := s2.fdb.Lookup(&xdpMacKey{Addr: [6]byte(guestMAC)}, &ifindex); err != nil || ifindex != uint32(lo.Index) {
		t.Fatalf("the second switch sees %v -> %d, %v; want ifindex %d", guestMAC, ifindex, err, lo.Index)
	}
	if err := s2.RemovePort(lo.Index); err != nil {
		t.Fatal(err)
	}
	if err := s1.fdb.Lookup(&xdpMacKey{Addr: [6]byte(guestMAC)}, &ifindex); err == nil {
		t.Fatal("the port removed through one switch is still in the other")
	}
}
