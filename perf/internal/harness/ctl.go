package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vhostd/vhostd/perf/internal/fe"
	"github.com/vhostd/vhostd/vhost"
)

// ctlPoller GETs /stats from vhostd's control socket every period, as an
// operator's scraper would (issue 16), until stopped.
type ctlPoller struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail int
	lastErr  error
}

// unixClient is an HTTP client of the server on unix socket path.
func unixClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// pollControl starts polling the control socket at path every period.
func pollControl(path string, period time.Duration) *ctlPoller {
	c := unixClient(path, time.Second)
	p := &ctlPoller{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			if err := getStats(c); err != nil {
				p.fail++
				p.lastErr = err
			} else {
				p.ok++
			}
		}
	}()
	return p
}

// getStats is one GET /stats that must answer 200 with a body.
func getStats(c *http.Client) error {
	resp, err := c.Get("http://vhostd/stats")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && (resp.StatusCode != http.StatusOK || n == 0) {
		err = fmt.Errorf("GET /stats: %s, %d bytes", resp.Status, n)
	}
	return err
}

// close stops the poller and says what it did: an error when no GET
// succeeded (the subject then measured nothing it claims to).
func (p *ctlPoller) close() (string, error) {
	if p == nil {
		return "", nil
	}
	close(p.stop)
	p.wg.Wait()
	note := fmt.Sprintf("control socket: %d GET /stats answered, %d failed", p.ok, p.fail)
	if p.fail > 0 {
		note += fmt.Sprintf(" (last: %v)", p.lastErr)
	}
	if p.ok == 0 {
		return note, fmt.Errorf("%s", note)
	}
	return note, nil
}

// ackedFeatures GETs /status from a vhostd control socket and returns the
// virtio features the front-end acked.
func ackedFeatures(path string) (uint64, error) {
	resp, err := unixClient(path, 2*time.Second).Get("http://vhostd/status")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Features struct{ Acked string } `json:"features"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("GET /status: %w", err)
	}
	return strconv.ParseUint(strings.TrimPrefix(st.Features.Acked, "0x"), 16, 64)
}

// checkPacked marks a packed subject's run unavailable, not failed, when
// the rings were not packed: the Go front-end refused a back-end that does
// not offer them (fe.ErrNoPacked), or vhostd did not negotiate them with
// testpmd's virtio-user (which falls back to split rings silently).
func (x *runState) checkPacked(r *Run) {
	if !x.s.Packed {
		return
	}
	if x.fe != nil && strings.Contains(x.fe.stderr.String(), fe.ErrNoPacked) {
		r.Unavailable = lastLines(x.fe.stderr.String(), 1)
		r.Error, r.Note = "", "" // not a failed run: no traffic was the point
		return
	}
	if x.s.Kind != kVhostd || x.g.FE != "dpdk" || r.Error != "" {
		return
	}
	acked, err := ackedFeatures(x.sock + ".ctl")
	switch {
	case err != nil:
		r.Error = fmt.Sprintf("could not check that the rings were packed: %v", err)
	case acked&(1<<vhost.FeatRingPacked) == 0:
		r.Unavailable = fmt.Sprintf("vhostd did not negotiate VIRTIO_F_RING_PACKED with virtio-user packed_vq=1 (acked %#x)", acked)
	}
}
