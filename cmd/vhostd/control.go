package main

import (
	"flag"
	"fmt"
	"net"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/control"
	"github.com/vhostd/vhostd/netdev"
)

// opsOptions are the operator's flags: control socket, metrics, version.
type opsOptions struct {
	control       optString
	metricsListen string
	logFormat     string
	version       bool
	pcap          string // --pcap: capture from start into this file
	snaplen       int
}

// optString is a string flag that remembers whether it was given, so that
// --control-socket "" (off) differs from no --control-socket (default).
type optString struct {
	v   string
	set bool
}

func (s *optString) String() string     { return s.v }
func (s *optString) Set(v string) error { s.v, s.set = v, true; return nil }

func (x *opsOptions) register(fs *flag.FlagSet) {
	fs.Var(&x.control, "control-socket", `control socket for "vhostd ctl" and curl (default: the --socket-path with .ctl appended; "" = none)`)
	fs.StringVar(&x.metricsListen, "metrics-listen", "", "also serve the Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9545")
	fs.StringVar(&x.logFormat, "log-format", "text", "text, or json: one JSON object per log line (for journald or a log shipper)")
	fs.BoolVar(&x.version, "version", false, "print the version and exit")
	fs.StringVar(&x.pcap, "pcap", "", "capture the guest-side frames, both ways and those dropped with the reason, into this pcapng `FILE` from the start (see vhostd ctl pcap)")
	fs.IntVar(&x.snaplen, "pcap-snaplen", netdev.DefaultSnaplen, "bytes kept of each captured frame (64-65553)")
}

// validate checks the flags against the vhost-user socket's.
func (x *opsOptions) validate(o *options) error {
	if p := x.controlPath(o); p != "" && p == o.socketPath {
		return fmt.Errorf("--control-socket %q: that is the vhost-user socket", p)
	}
	if x.logFormat != "text" && x.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", x.logFormat)
	}
	if x.snaplen < 64 || x.snaplen > netdev.MaxSnaplen {
		return fmt.Errorf("--pcap-snaplen %d: want 64..%d", x.snaplen, netdev.MaxSnaplen)
	}
	if x.metricsListen != "" {
		if _, _, err := net.SplitHostPort(x.metricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: want HOST:PORT (e.g. 127.0.0.1:9545): %v", x.metricsListen, err)
		}
	}
	return nil
}

// controlPath is where the control socket goes: the flag's value if
// given, else next to the vhost-user socket, else (--fd) nowhere.
func (x *opsOptions) controlPath(o *options) string {
	if x.control.set || o.socketPath == "" {
		return x.control.v
	}
	return o.socketPath + ".ctl"
}

// startControl starts the control socket and the metrics listener the
// flags ask for; it returns nil when neither is. A default control socket
// that cannot be created is only a warning; one asked for is an error.
func startControl(o *options, dev *netdev.Device, xdp *xdpState, log hclog.Logger) (*control.Server, error) {
	path := o.ops.controlPath(o)
	if path == "" && o.ops.metricsListen == "" {
		return nil, nil
	}
	cfg := control.Config{Device: dev, XDP: xdp.control(), Version: versionLine(), Mode: "server", Socket: o.socketPath, Log: log,
		Capture: &captureCtl{dev: dev, snaplen: o.ops.snaplen, xdp: xdp}}
	switch {
	case o.fd >= 0:
		cfg.Mode, cfg.Socket = "fd", fmt.Sprintf("fd %d", o.fd)
	case o.client:
		cfg.Mode = "client"
	}
	s := control.New(cfg)
	if path != "" {
		if err := s.ListenUnix(path); err != nil {
			if o.ops.control.set {
				return nil, err
			}
			log.Warn("no control socket", "error", err)
		}
	}
	if o.ops.metricsListen != "" {
		if _, err := s.ListenMetrics(o.ops.metricsListen); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// closeControl stops the control server, if any.
func closeControl(s *control.Server) {
	if s != nil {
		s.Close()
	}
}

// control describes the attached program for the control server.
func (s *xdpState) control() *control.XDP {
	if s == nil {
		return nil
	}
	return &control.XDP{Program: s.a.Program().String(), Attach: s.a.Mode().String(), Counters: s.a.Counters}
}
