package vhost

import (
	"sync"
	"time"
)

// Requests that act on the host outside the guest's memory, SEND_RARP (a
// frame on the TAP, a log line) and NET_SET_MTU (an ioctl on the host
// interface, a log line), pass a token bucket each (BAD-INPUTS 60): a
// burst, then a steady rate; beyond it they are refused, and the refusals
// go through the rejection log's own limit. The buckets are the server's,
// so reconnecting does not refill them.
//
// QEMU sends SEND_RARP a few times after a migration (five rounds by
// default over about a second, again on each announce-self) and NET_SET_MTU
// once per queue pair when the device starts: the burst covers both with
// room to spare.
const (
	actionBurst     = 16
	actionPerSecond = 2
)

// tokenBucket holds up to burst tokens and gains perSecond of them a
// second; each allowed action takes one.
type tokenBucket struct {
	mu        sync.Mutex
	burst     float64
	perSecond float64
	tokens    float64
	last      time.Time
}

func newTokenBucket(burst, perSecond int) *tokenBucket {
	return &tokenBucket{burst: float64(burst), perSecond: float64(perSecond), tokens: float64(burst)}
}

// allow takes a token if there is one.
func (b *tokenBucket) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSecond)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// actionLimits are the server's buckets, one per limited request.
type actionLimits struct {
	rarp, mtu *tokenBucket
}

func newActionLimits() actionLimits {
	return actionLimits{rarp: newTokenBucket(actionBurst, actionPerSecond), mtu: newTokenBucket(actionBurst, actionPerSecond)}
}

// limit refuses req when b has no token left.
func limit(b *tokenBucket, req Request) error {
	if b.allow() {
		return nil
	}
	return reject("rate", "more than %d %v a second after a burst of %d: refused", actionPerSecond, req, actionBurst)
}
