package qemutests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// miniQMP is just enough of QEMU's machine protocol for a migration: one
// command at a time, events skipped.
type miniQMP struct {
	c net.Conn
	r *bufio.Reader
}

func dialQMP(ctx context.Context, path string) (*miniQMP, error) {
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			q := &miniQMP{c: c, r: bufio.NewReader(c)}
			if _, err := q.r.ReadBytes('\n'); err != nil { // greeting
				return nil, err
			}
			if _, err := q.do("qmp_capabilities", nil); err != nil {
				return nil, err
			}
			return q, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w", path, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (q *miniQMP) do(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct{ Class, Desc string }
			Event  string `json:"event"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, err
		}
		if m.Event != "" {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	}
}

// migrationStatus is what query-migrate reports.
type migrationStatus struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	ErrorDesc string `json:"error-desc"`
}

func bridge(t *testing.T, ports ...string) string {
	t.Helper()
	br := "vhb" + guest.RandomSuffix(8)
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("link", "add", br, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", br).Run() })
	run("link", "set", br, "up")
	for _, p := range ports {
		run("link", "set", p, "master", br)
		run("link", "set", p, "up")
	}
	return br
}

// TestMigration moves a guest between two QEMUs on this host, each with its
// own vhostd, their TAPs on one bridge that holds the host address; the
// guest pings the host throughout.
func TestMigration(t *testing.T) {
	q := Gate(t)
	ctx := Context(t, 4*time.Minute)
	dir := TempDir(t)
	sn := Subnet(t)
	var taps, socks [2]string
	var vs [2]*guest.Process
	for i := range taps {
		taps[i], socks[i] = TapName(), filepath.Join(dir, fmt.Sprintf("vu%d.sock", i))
		v := StartVhostd(t, "--socket-path", socks[i], "--tap", taps[i], "--log-level", "debug")
		if err := guest.WaitFile(ctx, socks[i], v); err != nil {
			t.Fatal(err)
		}
		if err := guest.WaitFile(ctx, "/sys/class/net/"+taps[i], v); err != nil {
			t.Fatal(err)
		}
		vs[i] = v
	}
	br := bridge(t, taps[0], taps[1])
	HostAddr(t, br, sn.HostCIDR())
	mac := guest.RandomMAC()
	script := WithLib(`echo "LOOP start"
i=0
while true; do
	i=$((i+1))
	if ping -c 1 -W 1 $HIP >/dev/null 2>&1; then echo "PINGOK $i"; else echo "PINGLOST $i"; fi
	sleep 0.2
done
`)
	opts := func(i int, extra ...string) guest.Options {
		return guest.Options{
			QEMU: q, NIC: &guest.NIC{SocketPath: socks[i], MAC: mac}, GuestIP: sn.GuestCIDR(),
			Files: GuestFiles(sn, nil), Script: script,
			QEMUArgs: append([]string{"-qmp", "unix:" + filepath.Join(dir, fmt.Sprintf("qmp%d", i)) + ",server=on,wait=off"}, extra...),
		}
	}
	src := StartGuest(t, opts(0))
	if _, err := src.WaitFor(ctx, regexp.MustCompile(`PINGOK 3\n`)); err != nil {
		t.Fatalf("source guest: %v", err)
	}
	migSock := filepath.Join(dir, "mig.sock")
	dst := StartGuest(t, opts(1, "-incoming", "unix:"+migSock))
	qs, err := dialQMP(ctx, filepath.Join(dir, "qmp0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialQMP(ctx, filepath.Join(dir, "qmp1")); err != nil {
		t.Fatal(err)
	}
	if err := guest.WaitFile(ctx, migSock, nil); err != nil {
		t.Fatalf("destination's migration socket: %v", err)
	}
	if _, err := qs.do("migrate", map[string]any{"uri": "unix:" + migSock}); err != nil {
		t.Fatal(err)
	}
	var st migrationStatus
	for {
		r, err := qs.do("query-migrate", nil)
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(r, &st)
		if st.Status == "completed" || st.Status == "failed" || st.Status == "cancelled" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Status != "completed" {
		t.Fatalf("migration %s: %s", st.Status, st.ErrorDesc)
	}
	t.Logf("migration completed: total %d ms, downtime %d ms", st.TotalTime, st.Downtime)
	from := len(dst.Log())
	if _, err := dst.WaitForFrom(ctx, regexp.MustCompile(`(PINGOK \d+\n.*){5}`), from); err != nil {
		t.Fatalf("no pings answered on the destination: %v\n%s", err, dst.Log())
	}
	lost := strings.Count(src.Log()+dst.Log(), "PINGLOST")
	t.Logf("pings lost across the migration: %d", lost)
	for _, l := range strings.Split(vs[0].Log(), "\n") {
		if strings.Contains(l, "SET_LOG_BASE") || strings.Contains(l, "dirty") || strings.Contains(l, "SET_FEATURES") || strings.Contains(l, "GET_VRING_BASE") || strings.Contains(l, "SET_VRING_ADDR") {
			t.Log(l)
		}
	}
}
