// Command vhostd is a vhost-user virtio-net back-end: QEMU (or any
// vhost-user front-end) hands it a guest NIC's queues over a unix socket,
// and vhostd bridges them to a host TAP or macvtap device.
//
// It follows the vhost-user back-end program conventions
// (docs/interop/vhost-user.rst): --socket-path or --fd, --print-capabilities,
// no daemonizing, and a prompt clean exit on SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/netdev"
	"github.com/vhostd/vhostd/vhost"
)

type options struct {
	socketPath   string
	client       bool
	fd           int
	tap          string
	macvtap      string
	queues       int
	logLevel     string
	printCaps    bool
	busyPoll     int
	cpus         string
	mtu          int
	mac          string
	noCsum       bool
	noTSO        bool
	noUFO        bool
	noUSO        bool
	configSpace  bool
	threads      string
	tapWrite     string
	noMrgRxbuf   bool
	noEventIdx   bool
	noIndirect   bool
	statsEvery   time.Duration
	reconnect    time.Duration
	shutdownWait time.Duration
	cpuProfile   string
	xdp          xdpOptions
	ops          opsOptions
	sandbox      sandboxOptions
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("vhostd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports errors; --help is writeHelp's
	fs.StringVar(&o.socketPath, "socket-path", "", "vhost-user unix socket: listened on, or connected to with --client")
	fs.BoolVar(&o.client, "client", false, "connect to a front-end listening on --socket-path (QEMU server=on), reconnecting when it goes away")
	fs.IntVar(&o.fd, "fd", -1, "serve the vhost-user socket inherited as this file descriptor (listening or connected)")
	fs.StringVar(&o.tap, "tap", "", "TAP interface to create or attach to")
	fs.StringVar(&o.macvtap, "macvtap", "", "existing macvtap interface to use instead of a TAP")
	fs.IntVar(&o.queues, "queues", 1, "queue pairs offered to the guest (1-256)")
	fs.StringVar(&o.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.BoolVar(&o.printCaps, "print-capabilities", false, "print the back-end capabilities as JSON and exit")
	fs.IntVar(&o.busyPoll, "busy-poll", 50, "microseconds a worker spins without work before it sleeps; 0 = event mode, -1 = never sleep")
	fs.StringVar(&o.cpus, "cpus", "", "CPU list to pin queue-pair workers to, e.g. 0,2-3 (pair i gets the i-th CPU, wrapping)")
	fs.IntVar(&o.mtu, "mtu", 0, "MTU to set on the host interface and offer to the guest (0 = keep the interface's)")
	fs.StringVar(&o.mac, "mac", "", "guest MAC address reported in the device config space")
	fs.BoolVar(&o.noCsum, "no-csum", false, "offer no checksum offload (and so no TSO, UFO or USO)")
	fs.BoolVar(&o.noTSO, "no-tso", false, "offer no TCP segmentation offload")
	fs.BoolVar(&o.noUFO, "no-ufo", false, "offer no UDP fragmentation offload")
	fs.BoolVar(&o.noUSO, "no-uso", false, "offer no UDP segmentation offload")
	fs.StringVar(&o.threads, "threads", "inline", "deprecated: inline is the only mode (one worker thread per queue pair); accepted for old configurations")
	fs.StringVar(&o.tapWrite, "tap-write", "auto", "how TX frames go to the TAP: write (one write(2) each), uring (one io_uring_enter per batch) or auto (the faster in a 20 ms calibration at start)")
	fs.BoolVar(&o.configSpace, "config-space", false, "offer the device config space (VHOST_USER_PROTOCOL_F_CONFIG); QEMU's virtio-net does not use it")
	fs.BoolVar(&o.noMrgRxbuf, "no-mrg-rxbuf", false, "do not offer VIRTIO_NET_F_MRG_RXBUF")
	fs.BoolVar(&o.noEventIdx, "no-event-idx", false, "do not offer VIRTIO_RING_F_EVENT_IDX")
	fs.BoolVar(&o.noIndirect, "no-indirect", false, "do not offer VIRTIO_RING_F_INDIRECT_DESC")
	fs.DurationVar(&o.statsEvery, "stats-interval", 0, "log per-queue counters at this interval (0 = only on SIGUSR1)")
	fs.DurationVar(&o.reconnect, "reconnect", time.Second, "with --client, the delay between connection attempts")
	fs.DurationVar(&o.shutdownWait, "shutdown-timeout", 2*time.Second, "on SIGTERM, the longest wait for the connection to wind down")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file (for go tool pprof)")
	o.xdp.register(fs)
	o.ops.register(fs)
	o.sandbox.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, parseError(fs, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.printCaps || o.ops.version {
		return o, nil
	}
	switch {
	case o.socketPath == "" && o.fd < 0:
		return nil, errors.New("one of --socket-path or --fd is required")
	case o.socketPath != "" && o.fd >= 0:
		return nil, errors.New("--socket-path and --fd are incompatible")
	case o.client && o.socketPath == "":
		return nil, errors.New("--client needs --socket-path")
	case o.tap == "" && o.macvtap == "":
		return nil, errors.New("one of --tap or --macvtap is required")
	case o.tap != "" && o.macvtap != "":
		return nil, errors.New("--tap and --macvtap are incompatible")
	case o.busyPoll < -1:
		return nil, fmt.Errorf("--busy-poll %d: want microseconds >= 0, or -1", o.busyPoll)
	case o.reconnect <= 0:
		return nil, fmt.Errorf("--reconnect %v: must be positive", o.reconnect)
	}
	if err := checkThreads(o.threads); err != nil {
		return nil, err
	}
	if hclog.LevelFromString(o.logLevel) == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", o.logLevel)
	}
	if err := o.sandbox.parse(o.fd < 0 && !o.client, o.client); err != nil {
		return nil, err
	}
	return o, o.ops.validate(o)
}

// checkThreads accepts the deprecated --threads for old unit files and
// libvirt configurations: inline, the only mode, is a no-op; split, which
// ran a pair's ring side and TAP side on two threads, is gone.
func checkThreads(mode string) error {
	switch mode {
	case "inline":
		return nil
	case "split":
		return errors.New("--threads split: removed in this version (it lost to inline on every machine measured, perf/FINDINGS.md); drop the flag")
	}
	return fmt.Errorf("--threads %q: unknown mode; inline, the only one, is the default (the flag is deprecated: drop it)", mode)
}

// parseCPUs parses a CPU list such as "0,2-3".
func parseCPUs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("--cpus %q: %q is not a CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("--cpus %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func (o *options) netdevConfig(log hclog.Logger) (netdev.Config, error) {
	cfg := netdev.Config{
		TAP: o.tap, Macvtap: o.macvtap, QueuePairs: o.queues, MTU: o.mtu,
		Offload:     netdev.Offload{NoCsum: o.noCsum, NoTSO: o.noTSO, NoUFO: o.noUFO, NoUSO: o.noUSO},
		ConfigSpace: o.configSpace, NoMrgRxbuf: o.noMrgRxbuf, NoEventIdx: o.noEventIdx, NoIndirect: o.noIndirect,
		BusyPoll: time.Duration(o.busyPoll) * time.Microsecond, Log: log,
	}
	var err error
	if cfg.TAPWrite, err = netdev.ParseTAPWrite(o.tapWrite); err != nil {
		return cfg, err
	}
	if o.mac != "" {
		mac, err := net.ParseMAC(o.mac)
		if err != nil || len(mac) != 6 {
			return cfg, fmt.Errorf("--mac %q: not an Ethernet address", o.mac)
		}
		cfg.MAC = mac
	}
	cpus, err := parseCPUs(o.cpus)
	if err != nil {
		return cfg, err
	}
	cfg.CPUs = cpus
	return cfg, cfg.Validate()
}

// capabilities is the --print-capabilities output (QEMU
// docs/interop/vhost-user.json, VHostUserBackendCapabilities).
const capabilities = `{"type": "net", "features": []}`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ctl" {
		return runCtl(args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if rc, done := answerFlags(args, o, err, stdout, stderr); done {
		return rc
	}
	// Signals are caught from here on, so a SIGTERM during start-up still
	// ends with a clean shutdown.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)
	log := hclog.New(&hclog.LoggerOptions{Name: "vhostd", Level: hclog.LevelFromString(o.logLevel), Output: stderr,
		JSONFormat: o.ops.logFormat == "json"})
	cfg, err := o.netdevConfig(log.Named("netdev"))
	if err != nil {
		fmt.Fprintln(stderr, "vhostd:", err)
		return 2
	}
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		fmt.Fprintln(stderr, "vhostd: --cpuprofile:", err)
		return 2
	}
	defer stopProfile()
	xcfg, xdpOn, err := o.xdp.config(cfg.MAC)
	if err != nil {
		fmt.Fprintln(stderr, "vhostd:", err)
		return 2
	}
	dev, err := netdev.Open(cfg)
	if err != nil {
		log.Error("cannot open the host interface", "error", err)
		return 1
	}
	defer dev.Close()
	var xdp *xdpState
	if xdpOn {
		if xdp, err = attachXDP(&o.xdp, xcfg, dev, cfg.MAC, log.Named("xdp")); err != nil {
			log.Error("cannot attach the XDP program", "error", err)
			return 1
		}
		defer xdp.close()
	}

	if err := startPcap(o, dev, xdp); err != nil {
		log.Error("cannot start the capture", "error", err)
		return 1
	}
	ctl, err := startControl(o, dev, xdp, log.Named("control"))
	if err != nil {
		log.Error("cannot serve the control socket", "error", err)
		return 1
	}
	defer closeControl(ctl)

	srv := vhost.NewServer(dev, log.Named("vhost"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	serveErr, err := serve(ctx, srv, o, func() error { return o.sandbox.apply(log, xdpOn, dev.TAPWrite().Mode == "uring") })
	if err != nil {
		log.Error("cannot serve", "error", err)
		return 1
	}
	log.Info("ready", "interface", dev.Name(), "queue_pairs", o.queues, "features", netdev.FeatureString(dev.Features()))
	notify(log, "READY=1\nSTATUS=serving "+dev.Name())
	defer startWatchdog(log, func() { dev.Status() })()
	return wait(o, sigs, log, srv, dev, xdp, cancel, serveErr, stderr)
}

// startCPUProfile starts the --cpuprofile CPU profile into path, if path
// is set; stop ends it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// serve starts the vhost-user server the way the flags ask (an inherited
// connected fd, a client that dials, or a listening socket) and returns
// the channel that receives what the server's run returns. confine runs
// after the socket is set up and before the first connection is served.
func serve(ctx context.Context, srv *vhost.Server, o *options, confine func() error) (chan error, error) {
	serveErr := make(chan error, 1)
	o.sandbox.configure(srv)
	if o.fd < 0 && !o.client {
		if err := srv.Listen(o.socketPath); err != nil {
			return nil, err
		}
	}
	if err := confine(); err != nil {
		srv.Close() // removes the socket
		return nil, err
	}
	switch {
	case o.fd >= 0:
		go func() { serveErr <- srv.ServeFd(ctx, o.fd) }()
	case o.client:
		go func() { serveErr <- srv.DialAndServe(ctx, o.socketPath, o.reconnect) }()
	default:
		go func() { serveErr <- srv.Serve(ctx) }()
	}
	return serveErr, nil
}

// wait runs the daemon's life after start-up: stats on SIGUSR1 and every
// --stats-interval, an XDP reload on SIGHUP, shutdown on SIGTERM or
// SIGINT, and the end of a connected --fd. It returns the exit status.
func wait(o *options, sigs <-chan os.Signal, log hclog.Logger, srv *vhost.Server, dev *netdev.Device, xdp *xdpState,
	cancel context.CancelFunc, serveErr chan error, stderr io.Writer) int {
	var tick <-chan time.Time
	if o.statsEvery > 0 {
		t := time.NewTicker(o.statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				printStats(stderr, dev, xdp)
				continue
			case syscall.SIGHUP:
				xdp.reload()
				continue
			}
			log.Info("signal received, shutting down", "signal", sig.String())
			return shutdown(log, srv, dev, xdp, cancel, serveErr, o.shutdownWait, stderr)
		case <-tick:
			printStats(stderr, dev, xdp)
		case err := <-serveErr:
			// Only a connected --fd ends by itself: its front-end went away.
			if err != nil {
				log.Error("serving stopped", "error", err)
				return 1
			}
			log.Info("front-end connection ended")
			return 0
		}
	}
}

func shutdown(log hclog.Logger, srv *vhost.Server, dev *netdev.Device, xdp *xdpState, cancel context.CancelFunc, serveErr chan error, wait time.Duration, stderr io.Writer) int {
	notify(log, "STOPPING=1")
	cancel()
	srv.Close()
	select {
	case <-serveErr:
	case <-time.After(wait):
		log.Warn("connection did not wind down in time", "waited", wait)
	}
	printStats(stderr, dev, xdp)
	xdp.close()
	if err := dev.Close(); err != nil {
		log.Warn("closing the host interface", "error", err)
	}
	log.Info("stopped")
	return 0
}

func printStats(w io.Writer, dev *netdev.Device, xdp *xdpState) {
	fmt.Fprint(w, dev.StatsText()+xdp.statsText())
}
