package vhost

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// rateLimiter lets at most perSecond lines through each second and counts
// the ones it held back, so a hostile front-end cannot flood the log.
type rateLimiter struct {
	mu         sync.Mutex
	perSecond  int
	window     time.Time
	n          int
	suppressed int
	// actions limits SEND_RARP and NET_SET_MTU (actlimit.go).
	actions actionLimits
}

func newRateLimiter(perSecond int) *rateLimiter {
	return &rateLimiter{perSecond: perSecond, actions: newActionLimits()}
}

func (r *rateLimiter) log(l hclog.Logger, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.window) >= time.Second {
		if r.suppressed > 0 {
			l.Warn("log lines suppressed by the rate limit", "count", r.suppressed)
		}
		r.window, r.n, r.suppressed = now, 0, 0
	}
	r.n++
	ok := r.n <= r.perSecond
	if !ok {
		r.suppressed++
	}
	r.mu.Unlock()
	if ok {
		l.Warn(msg, args...)
	}
}
