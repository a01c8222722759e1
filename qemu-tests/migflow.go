package qemutests

// Traffic across a migration: TCP streams of known random payloads with
// SHA-256 on both ends (migFlow), and the guest's ping log with its longest
// gap (pingLog).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// migFlow is one TCP stream of a known random payload, host->guest or guest->host; moved
// counts the bytes the host has written or read so far.
type migFlow struct {
	toGuest bool
	port    int
	size    int64
	moved   atomic.Int64
	done    chan struct{}
	sha     string // the host's
	err     error
	dur     time.Duration
}

func (f *migFlow) String() string {
	if f.toGuest {
		return fmt.Sprintf("host->guest:%d (%d MiB)", f.port, f.size>>20)
	}
	return fmt.Sprintf("guest->host:%d (%d MiB)", f.port, f.size>>20)
}

// startFlow starts f: the host listens (guest->host) or dials (host->guest) and the guest is
// told its half.
func (e *migEnv) startFlow(toGuest bool, port int, size int64) *migFlow {
	t := e.t
	t.Helper()
	f := &migFlow{toGuest: toGuest, port: port, size: size, done: make(chan struct{})}
	if !toGuest {
		ln, err := net.Listen("tcp", net.JoinHostPort(e.sn.HostIP(), strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("flow %v: %v", f, err)
		}
		stop := context.AfterFunc(e.ctx, func() { ln.Close() })
		go func() {
			defer close(f.done)
			defer stop()
			defer ln.Close()
			c, err := ln.Accept()
			if err != nil {
				f.err = err
				return
			}
			defer c.Close()
			cs := context.AfterFunc(e.ctx, func() { c.Close() })
			defer cs()
			start := time.Now()
			h := sha256.New()
			_, f.err = io.Copy(io.MultiWriter(h, countWriter{&f.moved}), c)
			f.dur = time.Since(start)
			f.sha = hex.EncodeToString(h.Sum(nil))
		}()
		e.command(fmt.Sprintf("send %d %d", port, size))
		return f
	}
	e.command(fmt.Sprintf("recv %d", port))
	go func() {
		defer close(f.done)
		c, err := e.dial(e.ctx, net.JoinHostPort(e.sn.GuestIP(), strconv.Itoa(port)))
		if err != nil {
			f.err = err
			return
		}
		defer c.Close()
		cs := context.AfterFunc(e.ctx, func() { c.Close() })
		defer cs()
		start := time.Now()
		h := sha256.New()
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			b := buf[:min(int64(len(buf)), left)]
			rand.Read(b)
			h.Write(b)
			n, err := c.Write(b)
			f.moved.Add(int64(n))
			left -= int64(n)
			if err != nil {
				f.err = fmt.Errorf("after %d bytes: %w", size-left, err)
				return
			}
		}
		f.sha = hex.EncodeToString(h.Sum(nil))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		f.dur = time.Since(start)
	}()
	return f
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// check waits for f to end and compares the host's SHA-256 with the guest's (read from vm's
// console).
func (e *migEnv) checkFlow(f *migFlow, vm *migVM) {
	t := e.t
	t.Helper()
	select {
	case <-f.done:
	case <-e.ctx.Done():
		t.Fatalf("flow %v: %d bytes so far: %v", f, f.moved.Load(), e.ctx.Err())
	}
	if f.err != nil {
		t.Fatalf("flow %v: %v", f, f.err)
	}
	if n := f.moved.Load(); n != f.size {
		t.Fatalf("flow %v: %d bytes moved, want %d", f, n, f.size)
	}
	what := "received"
	if !f.toGuest {
		what = "sent"
	}
	m, err := vm.g.WaitFor(e.ctx, regexp.MustCompile(fmt.Sprintf(`XFER %s port=%d sha=(\w*)\n`, what, f.port)))
	if err != nil {
		t.Fatalf("flow %v: %v", f, err)
	}
	if m[1] != f.sha {
		t.Errorf("flow %v: sha256 host %s, guest %s", f, f.sha, m[1])
		return
	}
	t.Logf("flow %v: %.1f MB/s host-side, sha256 %s on both ends", f, float64(f.size)/1e6/f.dur.Seconds(), f.sha)
}

// lineTap calls f with each whole line written to it.
type lineTap struct {
	buf []byte
	f   func(string)
}

func (l *lineTap) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.f(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

// pingLog timestamps the guests' PINGOK/PINGLOST lines as the host sees them on the consoles.
type pingLog struct {
	mu   sync.Mutex
	ok   []time.Time
	lost []time.Time
}

var migPingLine = regexp.MustCompile(`^PING(OK|LOST) \d+$`)

func (p *pingLog) line(l string) {
	m := migPingLine.FindStringSubmatch(strings.TrimSpace(l))
	if m == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m[1] == "OK" {
		p.ok = append(p.ok, time.Now())
	} else {
		p.lost = append(p.lost, time.Now())
	}
}

// window returns the longest time between two answered pings that overlaps [from, to], the
// pings answered and lost in it.
func (p *pingLog) window(from, to time.Time) (gap time.Duration, ok, lost int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := time.Time{}
	for _, t := range p.ok {
		if !prev.IsZero() && t.After(from) && prev.Before(to) {
			gap = max(gap, t.Sub(prev))
		}
		if t.After(from) && t.Before(to) {
			ok++
		}
		prev = t
	}
	for _, t := range p.lost {
		if t.After(from) && t.Before(to) {
			lost++
		}
	}
	return gap, ok, lost
}

// udpNoPorts asks vm's guest for its UDP counters and returns NoPorts: datagrams that reached
// a port nothing listens on.
func (e *migEnv) udpNoPorts(vm *migVM) int {
	e.t.Helper()
	from := len(vm.g.Log())
	e.command("udpstat")
	m, err := vm.g.WaitForFrom(e.ctx, regexp.MustCompile(`UDPSTAT Udp: (\d+) (\d+) `), from)
	if err != nil {
		e.t.Fatalf("%s: guest UDP counters: %v", vm.name, err)
	}
	n, _ := strconv.Atoi(m[2])
	return n
}

// udpBurst sends n datagrams (100+i bytes) from the host to a closed port of the guest.
func (e *migEnv) udpBurst(n int) {
	e.t.Helper()
	c, err := net.Dial("udp", net.JoinHostPort(e.sn.GuestIP(), "9"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		if _, err := c.Write(bytes.Repeat([]byte{byte(i)}, 100+i)); err != nil {
			e.t.Fatalf("datagram %d: %v", i, err)
		}
	}
}
