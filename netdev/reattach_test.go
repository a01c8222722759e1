package netdev

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/privtest"
	"github.com/vhostd/vhostd/internal/testutil"
	"golang.org/x/sys/unix"
)

// inNetns runs open on a fresh OS thread moved into network namespace ns
// (the host watch's goroutine runs on any thread; vhostd itself lives in
// one namespace). The thread stays locked and dies with its goroutine.
func inNetns(t testing.TB, ns string, open func() (hostIf, error)) func() (hostIf, error) {
	return func() (h hostIf, err error) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			fd, e := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if e != nil {
				err = e
				return
			}
			defer unix.Close(fd)
			if err = unix.Setns(fd, unix.CLONE_NEWNET); err == nil {
				h, err = open()
			}
		}()
		<-done
		return h, err
	}
}

// tapRxPackets is what the kernel counted received on the TAP in ns: the
// frames vhostd wrote into it.
func tapRxPackets(t testing.TB, ns, name string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "-s", "link", "show", "dev", name).Output()
	if err != nil {
		t.Fatalf("ip link show %s: %v", name, err)
	}
	var links []struct {
		Stats struct {
			RX struct{ Packets uint64 } `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show %s: %v: %s", name, err, out)
	}
	return links[0].Stats.RX.Packets
}

// reattachCase is one kind of host interface: how to make it (again) in
// the test's namespace and the device config that opens it.
type reattachCase struct {
	ns, name string
	cfg      Config
	add      func(t *testing.T) // creates the interface again, same name
}

func tapCase(t *testing.T) reattachCase {
	ns := privtest.NetNS(t)
	name := "vhr" + testutil.Suffix(8)
	add := func(t *testing.T) { privtest.IP(t, ns, "tuntap", "add", "dev", name, "mode", "tap", "multi_queue") }
	add(t)
	return reattachCase{ns: ns, name: name, cfg: Config{TAP: name, QueuePairs: 1}, add: add}
}

func macvtapCase(t *testing.T) reattachCase {
	ns, mvt, _ := privtest.Macvtap(t, "vr", nil)
	lower := "vrl" + mvt[len("vrm"):]
	add := func(t *testing.T) {
		privtest.IP(t, ns, "link", "add", "link", lower, "name", mvt, "index", fmt.Sprint(100000+rand.IntN(1<<30)), "type", "macvtap", "mode", "bridge")
		privtest.IP(t, ns, "link", "set", mvt, "up")
	}
	return reattachCase{ns: ns, name: mvt, cfg: Config{Macvtap: mvt, QueuePairs: 1}, add: add}
}

// TestBadInput51Reattach: a TAP or macvtap deleted under a running device
// and then created again (same name) is found by the host watch and
// reattached: vhostd does not recreate it itself, the reattach hook (cmd:
// XDP) runs with the new ifindex before any queue takes traffic, and frames
// flow both ways again without a restart.
func TestBadInput51Reattach(t *testing.T) {
	for _, kind := range []struct {
		name string
		make func(t *testing.T) reattachCase
	}{{"tap", tapCase}, {"macvtap", macvtapCase}} {
		t.Run(kind.name, func(t *testing.T) { testReattach(t, kind.make(t)) })
	}
}

func testReattach(t *testing.T, c reattachCase) {
	c.cfg.Log = hclog.NewNullLogger()
	dev, err := Open(c.cfg)
	if err != nil {
		t.Fatalf("open %s in netns %s: %v", c.name, c.ns, err)
	}
	dev.re.reopen = inNetns(t, c.ns, dev.re.reopen)
	dev.probeEvery = 100 * time.Millisecond
	oldIndex := dev.Ifindex()
	hookIndex, hookSawRetired := 0, false
	dev.OnReattach(func(ifindex int) error {
		// Called with d.mu held, before the pairs take the new queues.
		hookIndex, hookSawRetired = ifindex, dev.pairs[0].tapRetired
		return nil
	})
	r := serveDevice(t, dev, 1, allFeatures())
	r.sendTX(t, 4)
	r.waitTXReturned(t, 4)

	privtest.IP(t, c.ns, "link", "del", c.name)
	gone := func() bool { return dev.Stats()[0].Values["tap_gone"] != 0 }
	if !testutil.WaitFor(5*time.Second, 20*time.Millisecond, gone) {
		t.Fatal("the deleted interface was not retired")
	}
	time.Sleep(300 * time.Millisecond) // attempts fail while it is missing
	if out, err := exec.Command("ip", "-n", c.ns, "link", "show", c.name).CombinedOutput(); err == nil {
		t.Fatalf("vhostd recreated the interface an operator deleted: %s", out)
	}
	c.add(t)
	back := func() bool {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		return hookIndex != 0 && !dev.pairs[0].tapRetired
	}
	if !testutil.WaitFor(10*time.Second, 20*time.Millisecond, back) {
		t.Fatalf("10 s after the interface came back: not reattached (hook ifindex %d)", hookIndex)
	}
	if hookIndex == oldIndex || hookIndex != dev.Ifindex() || !hookSawRetired {
		t.Fatalf("hook: ifindex %d (old %d, device %d), queue still retired when it ran %v", hookIndex, oldIndex, dev.Ifindex(), hookSawRetired)
	}

	before := dev.Stats()[0].Values
	r.sendTX(t, 6)
	r.waitTXReturned(t, 6)
	after := dev.Stats()[0].Values
	if d := after["tx_packets"] - before["tx_packets"]; d != 6 || after["tx_dropped_tap"] != before["tx_dropped_tap"] {
		t.Fatalf("after reattach: tx_packets +%d, tx_dropped_tap %d -> %d; want +6 and no drops", d, before["tx_dropped_tap"], after["tx_dropped_tap"])
	}
	if c.cfg.TAP != "" {
		if n := tapRxPackets(t, c.ns, c.name); n < 6 {
			t.Fatalf("the new TAP received %d frames, want 6", n)
		}
		r.receiveThroughTAP(t, dev.Ifindex())
	}
}

// receiveThroughTAP posts RX buffers, sends one frame into the TAP from the
// host side (a packet socket in the test thread's namespace) and checks it
// lands in the guest's RX ring.
func (r *devRig) receiveThroughTAP(t *testing.T, ifindex int) {
	t.Helper()
	rx := r.fe.Ring(0).Driver
	for i := 0; i < 8; i++ {
		rx.AddChain(nil, []int{2048})
	}
	rx.Publish()
	r.fe.Kick(0)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	frame := testutil.PatternFrame(200, 0x5a)
	if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}); err != nil {
		t.Fatalf("send into the TAP: %v", err)
	}
	var got []byte
	deadline := time.Now().Add(5 * time.Second)
	for got == nil && time.Now().Before(deadline) {
		r.fe.WaitCall(0, 100*time.Millisecond)
		for _, c := range rx.UsedAll() {
			if len(c.Written) > 12 && bytes.Equal(c.Written[12:], frame) {
				got = c.Written
			}
		}
	}
	if got == nil {
		t.Fatal("a frame sent into the reattached TAP never reached the guest")
	}
}
