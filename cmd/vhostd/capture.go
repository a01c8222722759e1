package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vhostd/vhostd/internal/control"
	"github.com/vhostd/vhostd/netdev"
	"github.com/vhostd/vhostd/xdptap"
)

// captureCtl starts and stops captures for the control socket and --pcap:
// the device's frames, and the XDP guard's drops when the guard is on.
type captureCtl struct {
	dev     *netdev.Device
	snaplen int
	xdp     *xdpState
}

func (c *captureCtl) StartCapture(path string) error {
	cfg := netdev.CaptureConfig{Path: path, Snaplen: c.snaplen}
	if src := c.xdp.captureSource(); src != nil {
		cfg.Extra = src
	}
	return c.dev.StartCapture(cfg)
}

func (c *captureCtl) StopCapture() error { return c.dev.StopCapture() }
func (c *captureCtl) Capturing() string  { return c.dev.Capturing() }

// startPcap starts the --pcap capture, if asked for.
func startPcap(o *options, dev *netdev.Device, xdp *xdpState) error {
	if o.ops.pcap == "" {
		return nil
	}
	c := &captureCtl{dev: dev, snaplen: o.ops.snaplen, xdp: xdp}
	if err := c.StartCapture(o.ops.pcap); err != nil {
		return fmt.Errorf("--pcap: %w", err)
	}
	return nil
}

// ctlPcap is "vhostd ctl pcap [start FILE | stop]": FILE is taken
// relative to ctl's working directory and sent as an absolute path.
func (c *ctlClient) ctlPcap(args []string) func(io.Writer) error {
	return func(w io.Writer) error {
		var reply control.PcapReply
		var err error
		switch {
		case len(args) == 0:
			err = c.getJSON("/pcap", &reply)
		case args[0] == "start":
			file, e := filepath.Abs(args[1])
			if e != nil {
				return e
			}
			body, _ := json.Marshal(control.PcapRequest{File: file})
			err = c.post("/pcap/start", body, &reply)
		default:
			err = c.post("/pcap/stop", nil, &reply)
		}
		if err != nil {
			return err
		}
		switch {
		case reply.File != "":
			fmt.Fprintf(w, "capturing to %s\n", reply.File)
		case len(args) > 0 && args[0] == "stop":
			fmt.Fprintln(w, "capture stopped")
		default:
			fmt.Fprintln(w, "no capture running")
		}
		return nil
	}
}

// pcapArgs checks the arguments of "ctl pcap".
func pcapArgs(args []string) error {
	switch {
	case len(args) == 0:
	case args[0] == "start" && len(args) == 2 && args[1] != "":
	case args[0] == "stop" && len(args) == 1:
	default:
		return fmt.Errorf("pcap %s: want pcap start FILE, pcap stop or pcap", strings.Join(args, " "))
	}
	return nil
}

// post sends a POST with a JSON body and decodes the JSON answer; an
// error answer's message is returned as it is.
func (c *ctlClient) post(path string, body []byte, v any) error {
	resp, err := c.http.Post("http://vhostd"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.path, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("POST %s: not the JSON expected: %v", path, err)
	}
	return nil
}

// captureSource is the XDP guard's report of the frames it drops, for a
// capture; nil when no guard runs.
func (s *xdpState) captureSource() netdev.CaptureSource {
	if s == nil || s.cfg.Mode != xdptap.ModeGuard {
		return nil
	}
	return &guardSource{x: s}
}

// guardSource turns the guard's drop reports into capture frames, with
// the comment "dropped: xdp guard RULE". Their time is when vhostd read
// them, within milliseconds of the drop.
type guardSource struct {
	x  *xdpState
	gc *xdptap.GuardCapture
}

func (g *guardSource) Open() (<-chan netdev.ExtraFrame, error) {
	g.x.mu.Lock()
	a := g.x.a
	g.x.mu.Unlock()
	if a == nil {
		return nil, errors.New("the XDP guard is not attached")
	}
	gc, err := a.StartCapture()
	if err != nil {
		return nil, err
	}
	g.gc = gc
	ch := make(chan netdev.ExtraFrame, 64)
	go func() {
		defer close(ch)
		for {
			d, err := gc.Read()
			if errors.Is(err, os.ErrClosed) {
				return
			} else if err != nil {
				continue // one bad report; the next may be fine
			}
			ch <- netdev.ExtraFrame{When: time.Now(), Data: d.Data, OrigLen: d.Len, Comment: "dropped: xdp guard " + d.Rule}
		}
	}()
	return ch, nil
}

func (g *guardSource) Close() error { return g.gc.Close() }
