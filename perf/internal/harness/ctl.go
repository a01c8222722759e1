package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// ctlPoller GETs /stats from vhostd's control socket every period, as an
// operator's scraper would (issue 16), until stopped.
type ctlPoller struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail int
	lastErr  error
}

// pollControl starts polling the control socket at path every period.
func pollControl(path string, period time.Duration) *ctlPoller {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
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
