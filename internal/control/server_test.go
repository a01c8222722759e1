package control

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vhostd/vhostd/netdev"
)

func getJSON(t testing.TB, c *http.Client, path string, v any) {
	t.Helper()
	code, body := get(t, c, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// TestStatusJSON checks every field group of /status.
func TestStatusJSON(t *testing.T) {
	dev := newFakeDevice(2)
	dev.status.Pairs[1].TX.State = "broken"
	dev.status.Pairs[1].TAPGone = true
	xdp := &XDP{Program: "guard", Attach: "native", Counters: func() (map[string]uint64, error) { return nil, nil }}
	_, c, _ := startFake(t, Config{Device: dev, XDP: xdp, Version: "vhostd v1.2.3", Mode: "server", Socket: "/run/vm.sock"})
	var st StatusReply
	getJSON(t, c, "/status", &st)
	t.Run("identity", func(t *testing.T) {
		if st.Version != "vhostd v1.2.3" || st.Uptime <= 0 || st.Started.IsZero() {
			t.Fatalf("version %q uptime %v started %v", st.Version, st.Uptime, st.Started)
		}
		if st.VhostUser != (VhostUser{Mode: "server", Socket: "/run/vm.sock"}) {
			t.Fatalf("vhost_user: %+v", st.VhostUser)
		}
	})
	t.Run("interface", func(t *testing.T) {
		if st.Interface != (Interface{Name: "vhc-fake", Kind: "tap", MTU: 1500}) || st.QueuePairs != 2 || st.Threads != "inline" {
			t.Fatalf("interface %+v, queue_pairs %d, threads %q", st.Interface, st.QueuePairs, st.Threads)
		}
	})
	t.Run("tap_write", func(t *testing.T) {
		if st.TAPWrite != (TAPWrite{Mode: "uring", By: "calibration", WriteNs: 1200, UringNs: 1000}) {
			t.Fatalf("tap_write %+v", st.TAPWrite)
		}
		_, body := get(t, c, "/status")
		if !strings.Contains(body, `"tap_write": {`) || !strings.Contains(body, `"chosen_by": "calibration"`) {
			t.Fatalf("tap_write in %s", body)
		}
	})
	t.Run("features", func(t *testing.T) {
		f := st.Features
		if f.Offered != "0x100008020" || f.Acked != "0x100000020" || !f.Negotiated {
			t.Fatalf("features: %+v", f)
		}
		if len(f.AckedNames) != 2 || f.AckedNames[1] != "VERSION_1" {
			t.Fatalf("acked names: %v", f.AckedNames)
		}
		if len(f.OfferedNames) != 3 {
			t.Fatalf("offered names: %v", f.OfferedNames)
		}
	})
	t.Run("rings", func(t *testing.T) {
		q := st.Queues
		if len(q) != 2 || q[0].RX != (RingState{Index: 0, Size: 256, State: "enabled"}) || q[1].TX != (RingState{Index: 3, Size: 256, State: "broken"}) {
			t.Fatalf("queues: %+v", q)
		}
		if q[0].TAPGone || !q[1].TAPGone {
			t.Fatalf("tap_gone: %+v", q)
		}
	})
	t.Run("xdp", func(t *testing.T) {
		if st.XDP != (XDPState{Program: "guard", Attach: "native"}) {
			t.Fatalf("xdp: %+v", st.XDP)
		}
	})
	t.Run("xdp off", func(t *testing.T) {
		_, c, _ := startFake(t, Config{Device: newFakeDevice(1)})
		var st StatusReply
		getJSON(t, c, "/status", &st)
		if st.XDP != (XDPState{Program: "off"}) || st.Features.Negotiated != true {
			t.Fatalf("xdp: %+v", st.XDP)
		}
	})
}

// TestStatsJSON checks /stats: netdev's counters and the workers' figures
// per queue, and the XDP counters or the error reading them; the values
// follow the device's.
func TestStatsJSON(t *testing.T) {
	dev := newFakeDevice(3)
	dev.workers[1].Sleeps = 7
	dev.workers[2] = nil // no ring started yet
	var xdpErr error
	xdp := &XDP{Program: "guard", Attach: "generic", Counters: func() (map[string]uint64, error) {
		return map[string]uint64{"xdp_guard_pass": 3, "xdp_guard_drop_src_mac": 1}, xdpErr
	}}
	_, c, _ := startFake(t, Config{Device: dev, XDP: xdp})
	var st StatsReply
	getJSON(t, c, "/stats", &st)
	if len(st.Queues) != 3 || st.Queues[0].Counters["tx_packets"] != 0 || len(st.Queues[0].Counters) != 6 {
		t.Fatalf("queues: %+v", st.Queues)
	}
	if w := st.Queues[0].Workers; len(w) != 1 || w[0].Role != "inline" {
		t.Fatalf("queue 0 workers: %+v", w)
	}
	if w := st.Queues[1].Workers; len(w) != 1 || w[0].Role != "inline" || w[0].Sleeps != 7 {
		t.Fatalf("queue 1 workers: %+v", w)
	}
	if w := st.Queues[2].Workers; w == nil || len(w) != 0 {
		t.Fatalf("queue 2 workers (none started): %+v", w)
	}
	if st.XDP["xdp_guard_pass"] != 3 || st.XDPError != "" {
		t.Fatalf("xdp: %v %q", st.XDP, st.XDPError)
	}
	dev.add(1, "tx_packets", 5)
	dev.add(1, "tx_bytes", 300)
	xdpErr = errors.New("map gone")
	st = StatsReply{}
	getJSON(t, c, "/stats", &st)
	if q := st.Queues[1].Counters; q["tx_packets"] != 5 || q["tx_bytes"] != 300 {
		t.Fatalf("after traffic: %v", q)
	}
	if st.XDPError != "map gone" || st.XDP != nil {
		t.Fatalf("xdp error not reported: %v %q", st.XDP, st.XDPError)
	}
	_, text := get(t, c, "/metrics")
	if v := sample(t, parseExposition(t, text), "vhostd_xdp_counters_up", nil); v != 0 {
		t.Fatalf("vhostd_xdp_counters_up = %v with the counters unreadable", v)
	}
}

// parseExposition parses text with Prometheus's own parser (legacy metric
// names, the strictest).
func parseExposition(t testing.TB, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return fams
}

// sample returns the value of family's sample whose labels include want.
func sample(t testing.TB, fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[family]
	if !ok {
		t.Fatalf("no family %s", family)
	}
	for _, m := range f.GetMetric() {
		match := 0
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
				match++
			}
		}
		if match == len(want) {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			}
			return m.GetUntyped().GetValue()
		}
	}
	t.Fatalf("no %s sample with labels %v", family, want)
	return 0
}

// TestMetricsExposition parses /metrics with Prometheus's parser, checks
// names, types and labels, and that values follow the device's counters.
func TestMetricsExposition(t *testing.T) {
	dev := newFakeDevice(2)
	dev.stats[0].Values["brand_new_drops"] = 4 // a counter netdev may add later
	xdp := &XDP{Program: "count", Attach: "native", Counters: func() (map[string]uint64, error) {
		return map[string]uint64{"xdp_q0_packets": 9, "xdp_q0_bytes": 900}, nil
	}}
	_, c, _ := startFake(t, Config{Device: dev, XDP: xdp, Version: `v0 "quoted" \ name`})
	code, text := get(t, c, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	fams := parseExposition(t, text)
	for name, f := range fams {
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
	if v := sample(t, fams, "vhostd_info", map[string]string{"version": `v0 "quoted" \ name`, "xdp": "count native"}); v != 1 {
		t.Fatalf("vhostd_info %v", v)
	}
	if fams["vhostd_frames_total"].GetType() != dto.MetricType_COUNTER || fams["vhostd_tap_gone"].GetType() != dto.MetricType_GAUGE {
		t.Fatalf("types: frames %v, tap_gone %v", fams["vhostd_frames_total"].GetType(), fams["vhostd_tap_gone"].GetType())
	}
	dev.add(1, "tx_packets", 5)
	dev.add(0, "rx_bytes", 1000)
	dev.add(1, "tx_oversize", 2)
	fams = parseExposition(t, func() string { _, s := get(t, c, "/metrics"); return s }())
	for _, tc := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"vhostd_frames_total", map[string]string{"queue": "1", "direction": "tx"}, 5},
		{"vhostd_frames_total", map[string]string{"queue": "0", "direction": "tx"}, 0},
		{"vhostd_bytes_total", map[string]string{"queue": "0", "direction": "rx"}, 1000},
		{"vhostd_dropped_frames_total", map[string]string{"queue": "1", "direction": "tx", "reason": "oversize"}, 2},
		{"vhostd_ring_size", map[string]string{"queue": "1", "direction": "rx"}, 256},
		{"vhostd_ring_up", map[string]string{"queue": "0", "direction": "tx"}, 1},
		{"vhostd_queue_pairs", nil, 2},
		{"vhostd_worker_polls_total", map[string]string{"queue": "0"}, 0},
		{"vhostd_xdp_frames_total", map[string]string{"counter": "xdp_q0_packets"}, 9},
		{"vhostd_xdp_bytes_total", map[string]string{"counter": "xdp_q0_bytes"}, 900},
		{"vhostd_xdp_counters_up", nil, 1},
		{"vhostd_brand_new_drops_total", map[string]string{"queue": "0"}, 4},
	} {
		if got := sample(t, fams, tc.family, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.family, tc.labels, got, tc.want)
		}
	}
	promtool(t, text)
}

// TestMetricsNoThreadLabels: one worker runs each queue pair (the split
// mode and its ring and TAP workers are gone), so no sample carries a
// worker label and vhostd_info no threads label: each only told split
// workers or modes apart.
func TestMetricsNoThreadLabels(t *testing.T) {
	_, c, _ := startFake(t, Config{Device: newFakeDevice(2)})
	_, text := get(t, c, "/metrics")
	workers := 0
	for name, f := range parseExposition(t, text) {
		for _, m := range f.GetMetric() {
			if strings.HasPrefix(name, "vhostd_worker_") {
				workers++
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "worker" || l.GetName() == "threads" {
					t.Errorf("%s has a %s label (%q)", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	if workers != 2*7 {
		t.Errorf("%d worker samples, want 7 per queue pair", workers)
	}
}

// TestEveryNetdevCounterHasAMetric: a counter netdev adds must get a
// family with HELP, not the untyped fallback.
func TestEveryNetdevCounterHasAMetric(t *testing.T) {
	for _, name := range netdev.CounterNames() {
		if _, ok := queueMetrics[name]; !ok {
			t.Errorf("netdev counter %s has no entry in queueMetrics", name)
		}
	}
}

// promtool runs `promtool check metrics` on text when promtool is in
// $PATH (Debian's prometheus package) or $PROMTOOL; it skips that part
// otherwise.
func promtool(t *testing.T, text string) {
	path := os.Getenv("PROMTOOL")
	if path == "" {
		var err error
		if path, err = exec.LookPath("promtool"); err != nil {
			if os.Getenv("VHOSTD_TEST_PRIVILEGED") == "1" {
				t.Fatal("promtool not found (scripts/test.sh extracts it from Debian's prometheus package and sets $PROMTOOL)")
			}
			t.Log("promtool not found: `promtool check metrics` not run")
			return
		}
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestRequestsThatChangeNothing: only GET and HEAD, and unknown paths get a
// JSON error naming the path.
func TestRequestsThatChangeNothing(t *testing.T) {
	_, c, _ := startFake(t, Config{Device: newFakeDevice(1)})
	resp, err := c.Post("http://vhostd/stats", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /stats: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	code, body := get(t, c, "/nope")
	if code != http.StatusNotFound || !strings.Contains(body, `\"/nope\"`) {
		t.Fatalf("GET /nope: %d %s", code, body)
	}
}

// TestControlSocketFile: mode 0600, a stale socket file is replaced, a
// live one or a regular file refused, and Close removes only its own.
func TestControlSocketFile(t *testing.T) {
	s, c, path := startFake(t, Config{Device: newFakeDevice(1)})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, mode %v", path, err, fi.Mode())
	}
	if err := New(Config{Device: newFakeDevice(1)}).ListenUnix(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("second server on a live socket: %v", err)
	}
	if code, _ := get(t, c, "/status"); code != http.StatusOK {
		t.Fatalf("the first server stopped answering: %d", code)
	}
	s.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	// A stale socket (bound, nobody listening).
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s2 := New(Config{Device: newFakeDevice(1)})
	if err := s2.ListenUnix(path); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s2.Close()
	file := filepath.Join(t.TempDir(), "regular")
	os.WriteFile(file, nil, 0o600)
	if err := New(Config{Device: newFakeDevice(1)}).ListenUnix(file); err == nil {
		t.Fatal("a regular file was taken over")
	}
}

// TestMetricsListen: the TCP listener serves /metrics and nothing else.
func TestMetricsListen(t *testing.T) {
	s := New(Config{Device: newFakeDevice(1)})
	defer s.Close()
	addr, err := s.ListenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{}
	resp, err := c.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics over TCP: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = c.Get("http://" + addr.String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /status over TCP: %d, want 404", resp.StatusCode)
	}
	if _, err := New(Config{Device: newFakeDevice(1)}).ListenMetrics(addr.String()); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Fatalf("second listener on %s: %v", addr, err)
	}
}
