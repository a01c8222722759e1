package vhost_test

// SEND_RARP and NET_SET_MTU are rate-limited (issue 15): a front-end
// sending thousands reaches the device a bounded number of times, the log
// stays short, and the session stays healthy.

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

func TestBadInput60AnnounceAndMTURateLimit(t *testing.T) {
	const count = 10000
	cases := []struct {
		req     vhost.Request
		payload []byte
		reached func(vhosttest.NullState) int
	}{
		{vhost.ReqSendRARP, u64(0x5254_0012_3456), func(s vhosttest.NullState) int { return s.RARPs }},
		{vhost.ReqNetSetMTU, u64(1500), func(s vhosttest.NullState) int { return s.MTUSets }},
	}
	for _, c := range cases {
		t.Run(c.req.String(), func(t *testing.T) {
			h := newHarnessLevel(t, hclog.Info)
			h.start(2)
			before := c.reached(h.state())
			t0 := time.Now()
			for i := 0; i < count; i++ {
				if err := h.fe.Send(c.req, 0, c.payload); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			h.alive()
			elapsed := time.Since(t0)
			secs := int(elapsed/time.Second) + 1
			reached := c.reached(h.state()) - before
			// A burst of 16, then 2 a second; the loop takes well under
			// a second on an idle machine.
			if max := 16 + 2*secs; reached > max || reached == 0 {
				t.Fatalf("%d %v in %v reached the device %d times, want 1..%d", count, c.req, elapsed, reached, max)
			}
			lines := strings.Count(h.logs.String(), "\n")
			if max := 12*secs + 5; lines > max {
				t.Fatalf("%d %v in %v logged %d lines, want at most %d:\n%s", count, c.req, elapsed, lines, max, h.logs)
			}
			h.logged(c.req, "rate")
			// Healthy: the rings still run, and once the bucket refills
			// the request works again.
			if len(h.state().Running) != 2 {
				t.Fatalf("rings after the flood: %+v", h.state())
			}
			time.Sleep(600 * time.Millisecond)
			h.ack(c.req, c.payload)
			t.Logf("%d %v in %v: %d reached the device, %d log lines", count, c.req, elapsed, reached, lines)
		})
	}
}
