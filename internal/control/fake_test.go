package control

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vhostd/vhostd/busypoll"
	"github.com/vhostd/vhostd/internal/testutil"
	"github.com/vhostd/vhostd/netdev"
)

// fakeDevice is a Device whose figures the test sets.
type fakeDevice struct {
	mu      sync.Mutex
	status  netdev.Status
	stats   []netdev.QueueStats
	workers []*busypoll.Stats
}

func newFakeDevice(pairs int) *fakeDevice {
	d := &fakeDevice{status: netdev.Status{
		Interface: "vhc-fake", Kind: "tap", MTU: 1500, QueuePairs: pairs,
		TAPWrite: netdev.TAPWriteChoice{Mode: "uring", By: "calibration", WriteNs: 1200, UringNs: 1000},
		Offered:  1<<32 | 1<<15 | 1<<5, Acked: 1<<32 | 1<<5,
	}}
	for i := 0; i < pairs; i++ {
		d.status.Pairs = append(d.status.Pairs, netdev.PairStatus{Pair: i,
			RX: netdev.RingStatus{Index: 2 * i, Size: 256, State: "enabled"},
			TX: netdev.RingStatus{Index: 2*i + 1, Size: 256, State: "enabled"}})
		d.stats = append(d.stats, netdev.QueueStats{Pair: i, Values: map[string]uint64{
			"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "tx_oversize": 0, "tap_gone": 0}})
		d.workers = append(d.workers, &busypoll.Stats{})
	}
	return d
}

func (d *fakeDevice) Status() netdev.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

func (d *fakeDevice) Stats() []netdev.QueueStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]netdev.QueueStats, len(d.stats))
	for i, q := range d.stats {
		m := map[string]uint64{}
		for k, v := range q.Values {
			m[k] = v
		}
		out[i] = netdev.QueueStats{Pair: q.Pair, Values: m}
	}
	return out
}

func (d *fakeDevice) WorkerStats() []*busypoll.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*busypoll.Stats, len(d.workers))
	for i, w := range d.workers {
		if w != nil {
			s := *w
			out[i] = &s
		}
	}
	return out
}

// add adds n to queue q's counter name.
func (d *fakeDevice) add(q int, name string, n uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats[q].Values[name] += n
}

// unixClient is an HTTP client that dials the unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// get fetches path over c and returns the status code and body.
func get(t testing.TB, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("http://vhostd" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// startFake serves a fake device on a fresh control socket.
func startFake(t testing.TB, cfg Config) (*Server, *http.Client, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vhostd-"+testutil.Suffix(6)+".ctl")
	s := New(cfg)
	if err := s.ListenUnix(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, unixClient(path), path
}
