package qemutests

// TCP transfers between the host and the guest, with SHA-256 on both ends:
// the guest's half is a script (FlowScript), the host's is RunFlows.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Flow is one TCP transfer between the host's end and the guest: MiB mebibytes of random
// data, to the guest or from it, on Port (the host listens for flows from the guest, the
// guest for flows to it).
type Flow struct {
	ToGuest bool
	Port    int
	MiB     int
}

func (f Flow) String() string {
	if f.ToGuest {
		return fmt.Sprintf("host->guest:%d", f.Port)
	}
	return fmt.Sprintf("guest->host:%d", f.Port)
}

// FlowScript is the guest's half of flows: all at once when parallel, else one after the
// other in order.
func FlowScript(parallel bool, flows ...Flow) string {
	var s strings.Builder
	bg := ""
	if parallel {
		bg = " &"
	}
	for _, f := range flows {
		name := fmt.Sprintf("f%d", f.Port)
		if f.ToGuest {
			fmt.Fprintf(&s, "recv %s %d%s\n", name, f.Port, bg)
		} else {
			fmt.Fprintf(&s, "mkdata %s %d\nsend %s %d%s\n", name, f.MiB, name, f.Port, bg)
		}
	}
	if parallel {
		s.WriteString("wait\n")
	}
	return s.String()
}

// maxFlowLines: RunFlows logs each flow when there are at most this many, else a summary.
const maxFlowLines = 4

// FlowResult is what the host saw of one flow.
type FlowResult struct {
	Flow
	Bytes int64
	SHA   string        // of what the host sent or received
	Time  time.Duration // host side: accept to EOF, or connect to the guest's close
	Err   error
}

// MBps is the host's throughput figure in MB/s (informational: never assert it).
func (r FlowResult) MBps() float64 { return float64(r.Bytes) / 1e6 / r.Time.Seconds() }

// RunFlows runs the host's half of flows, all at once (the guest's script orders them), and
// checks each against the guest's XFER line: same byte count, same SHA-256. It logs each
// flow's throughput and returns the results.
func (b *Bed) RunFlows(flows ...Flow) []FlowResult {
	b.T.Helper()
	res := make([]FlowResult, len(flows))
	start := time.Now()
	var wg sync.WaitGroup
	for i, f := range flows {
		res[i].Flow = f
		if f.ToGuest {
			wg.Go(func() { b.sendFlow(&res[i]) })
			continue
		}
		var ln net.Listener
		err := b.inHostNetns(func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(b.Net.HostIP(), strconv.Itoa(f.Port)))
			return err
		})
		if err != nil {
			b.T.Fatalf("flow %v: %v", f, err)
		}
		stop := context.AfterFunc(b.Ctx, func() { ln.Close() })
		wg.Go(func() {
			defer stop()
			defer ln.Close()
			b.receiveFlow(ln, &res[i])
		})
	}
	wg.Wait()
	var total int64
	for _, r := range res {
		if r.Err != nil {
			b.T.Errorf("flow %v: %v", r.Flow, r.Err)
			continue
		}
		total += r.Bytes
		if len(res) <= maxFlowLines {
			b.T.Logf("flow %v: %.1f MiB in %.2f s: %.1f MB/s, sha256 %s matches", r.Flow, float64(r.Bytes)/(1<<20), r.Time.Seconds(), r.MBps(), r.SHA[:16])
		}
	}
	if len(res) > maxFlowLines {
		b.T.Logf("%d flows: %.1f MiB with matching sha256 in %.2f s (%.1f MB/s together)", len(res), float64(total)/(1<<20), time.Since(start).Seconds(), float64(total)/1e6/time.Since(start).Seconds())
	}
	return res
}

var xferLine = `XFER %s port=%d sha=(\w*) bytes=(\d+).*\n`

// guestXfer waits for the guest's XFER line about flow r and compares it with the host's side.
func (b *Bed) guestXfer(r *FlowResult, what string) {
	m, err := b.Guest.WaitFor(b.Ctx, regexp.MustCompile(fmt.Sprintf(xferLine, what, r.Port)))
	if err != nil {
		r.Err = err
		return
	}
	want := int64(r.MiB) << 20
	if n, _ := strconv.ParseInt(m[2], 10, 64); m[1] != r.SHA || n != r.Bytes || n != want {
		r.Err = fmt.Errorf("guest %s %s bytes sha256 %s; the host %d bytes sha256 %s (want %d bytes)", what, m[2], m[1], r.Bytes, r.SHA, want)
	}
}

func (b *Bed) receiveFlow(ln net.Listener, r *FlowResult) {
	c, err := ln.Accept()
	if err != nil {
		r.Err = fmt.Errorf("accept: %w", err)
		return
	}
	defer c.Close()
	stop := context.AfterFunc(b.Ctx, func() { c.Close() })
	defer stop()
	start := time.Now()
	h := sha256.New()
	r.Bytes, err = io.Copy(h, c)
	r.Time = time.Since(start)
	r.SHA = hex.EncodeToString(h.Sum(nil))
	if err != nil {
		r.Err = fmt.Errorf("receive after %d bytes: %w", r.Bytes, err)
		return
	}
	c.Close() // the guest's nc exits on our close, then prints its line
	b.guestXfer(r, "sent")
}

func (b *Bed) sendFlow(r *FlowResult) {
	if _, err := b.Guest.WaitFor(b.Ctx, regexp.MustCompile(fmt.Sprintf(`XFER listen port=%d\n`, r.Port))); err != nil {
		r.Err = err
		return
	}
	start := time.Now()
	c, err := b.dial(net.JoinHostPort(b.Net.GuestIP(), strconv.Itoa(r.Port)))
	if err != nil {
		r.Err = err
		return
	}
	defer c.Close()
	stop := context.AfterFunc(b.Ctx, func() { c.Close() })
	defer stop()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for range r.MiB {
		rand.Read(buf)
		h.Write(buf)
		n, err := c.Write(buf)
		r.Bytes += int64(n)
		if err != nil {
			r.Err = fmt.Errorf("send after %d bytes: %w", r.Bytes, err)
			return
		}
	}
	r.SHA = hex.EncodeToString(h.Sum(nil))
	// The guest's nc exits once it has read our EOF: its close ends the transfer.
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.Copy(io.Discard, c); err != nil {
		r.Err = fmt.Errorf("waiting for the guest to close: %w", err)
		return
	}
	r.Time = time.Since(start)
	b.guestXfer(r, "received")
}
