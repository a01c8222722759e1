// Package control is vhostd's control socket: an HTTP server on a unix
// socket that answers GET /status and GET /stats with JSON and GET
// /metrics with a Prometheus text exposition, and optionally serves
// /metrics alone on a TCP address for a node scraper.
//
// Everything it reads is published by the data path anyway: netdev's
// per-queue counters (atomic loads of what the workers store once per
// poll, the same read as SIGUSR1's), the busypoll workers' counters and
// the ring states (under netdev's control-plane lock, which no worker
// takes). A request costs the data path nothing.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/busypoll"
	"github.com/vhostd/vhostd/netdev"
)

// Device is what the server reads from the virtio-net device
// (*netdev.Device).
type Device interface {
	Status() netdev.Status
	Stats() []netdev.QueueStats
	WorkerStats() []*busypoll.Stats // per queue pair, nil before it runs
}

// XDP describes an attached XDP program.
type XDP struct {
	Program  string                            // guard, count, count-drop, reflect, switch or object
	Attach   string                            // native or generic
	Counters func() (map[string]uint64, error) // the program's counters by name
}

// Config is what the server reports.
type Config struct {
	Device  Device
	XDP     *XDP    // nil: no XDP program
	Version string  // the version line
	Mode    string  // vhost-user mode: server, client or fd
	Socket  string  // vhost-user socket path, or "fd N"
	Capture Capture // nil: no capture commands
	Log     hclog.Logger
}

// Server is the control server. Its methods may be called from any
// goroutine.
type Server struct {
	cfg     Config
	started time.Time
	mu      sync.Mutex
	servers []*http.Server
	closed  bool
	path    string // the unix socket to remove on Close
	ino     uint64
}

// New returns a server reporting on cfg.Device; it listens once
// ListenUnix or ListenMetrics is called.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	return &Server{cfg: cfg, started: time.Now()}
}

func (s *Server) uptime() float64 { return time.Since(s.started).Seconds() }

// Handler serves /status, /stats and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", getOnly(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.status()) }))
	mux.HandleFunc("/stats", getOnly(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.stats()) }))
	mux.Handle("/metrics", s.metricsHandler())
	s.pcapHandler(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]string{"error": fmt.Sprintf("no such path %q: GET /status, /stats or /metrics", r.URL.Path)})
	})
	return mux
}

func (s *Server) metricsHandler() http.Handler {
	return getOnly(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.WriteMetrics(w)
	})
}

// getOnly answers 405 to anything but GET and HEAD: the socket changes
// nothing.
func getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.WriteHeader(http.StatusMethodNotAllowed)
			writeJSON(w, map[string]string{"error": fmt.Sprintf("method %s on %s: only GET", r.Method, r.URL.Path)})
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ListenUnix serves the control socket at path, mode 0600. A socket file
// that nothing listens on any more (left by a killed vhostd) is replaced;
// a live one, or a file that is not a socket, is an error.
func (s *Server) ListenUnix(path string) error {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if errors.Is(err, syscall.EADDRINUSE) && deadSocket(path) {
		s.cfg.Log.Info("replacing a stale control socket", "path", path)
		os.Remove(path)
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	var st syscall.Stat_t
	if err := os.Chmod(path, 0o600); err != nil || syscall.Stat(path, &st) != nil {
		ln.Close()
		return fmt.Errorf("control socket %s: cannot restrict it to its owner: %v", path, err)
	}
	s.mu.Lock()
	s.path, s.ino = path, st.Ino
	s.mu.Unlock()
	s.serve(ln, s.Handler())
	s.cfg.Log.Info("control socket listening", "path", path)
	return nil
}

// deadSocket reports whether path is a socket file nobody accepts on.
func deadSocket(path string) bool {
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// ListenMetrics serves the Prometheus exposition, and nothing else, at
// http://addr/metrics. It returns the address it listens on.
func (s *Server) ListenMetrics(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metricsHandler())
	s.serve(ln, mux)
	s.cfg.Log.Info("metrics listening", "address", ln.Addr().String())
	return ln.Addr(), nil
}

func (s *Server) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Error("control server stopped", "address", ln.Addr().String(), "error", err)
		}
	}()
}

// Close stops every listener and removes the control socket it created
// (unless another file has taken its place). Safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	servers, path, ino := s.servers, s.path, s.ino
	s.servers, s.path, s.closed = nil, "", true
	s.mu.Unlock()
	for _, srv := range servers {
		srv.Close()
	}
	var st syscall.Stat_t
	if path != "" && syscall.Stat(path, &st) == nil && st.Ino == ino {
		os.Remove(path)
	}
	return nil
}
