package vhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/closeflag"
	"golang.org/x/sys/unix"
)

// Server speaks vhost-user for one Device. It serves one front-end
// connection at a time: a vhost-user net device belongs to one guest NIC,
// and QEMU puts all of a NIC's queue pairs on one connection. Further
// connections wait in the listen backlog until the current one ends.
type Server struct {
	log hclog.Logger
	dev Device

	mu       sync.Mutex
	ln       *net.UnixListener
	path     string
	ino      uint64
	conn     *net.UnixConn
	closed   closeflag.Flag
	sessions int // connections served so far
	sockOpts SocketOptions
	peers    PeerPolicy

	// lim rate-limits the rejection log across all connections: a
	// front-end that reconnects after each bad message gets no fresh
	// allowance.
	lim *rateLimiter
}

// NewServer returns a server for dev. log may be nil.
func NewServer(dev Device, log hclog.Logger) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Server{log: log, dev: dev, lim: newRateLimiter(10), sockOpts: SocketOptions{UID: -1, GID: -1}}
}

// Listen creates the listening socket at path (server mode, --socket-path).
// A stale socket file left by a killed backend is removed; a socket that
// still has a listener, or a file that is not a socket, is an error.
func (s *Server) Listen(path string) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("listen %s: another process is listening there", path)
		}
		if !errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("listen %s: probing the existing socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("listen %s: removing the stale socket: %w", path, err)
		}
		s.log.Info("removed stale socket", "path", path)
	}
	s.mu.Lock()
	opts := s.sockOpts
	s.mu.Unlock()
	ln, err := listenUnix(path, opts)
	if err != nil {
		return fmt.Errorf("listen %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		ln.Close()
		return fmt.Errorf("listen %s: %w", path, err)
	}
	s.mu.Lock()
	s.ln, s.path, s.ino = ln, path, st.Ino
	s.mu.Unlock()
	s.log.Info("listening", "path", path)
	return nil
}

// listenerFromFd adopts an inherited socket (--fd): it returns a listener
// for a listening socket, to be served like one from Listen, or the
// connection for a connected one, to be served once.
func (s *Server) listenerFromFd(fd int) (*net.UnixListener, *net.UnixConn, error) {
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, nil, fmt.Errorf("fd %d: not a socket: %w", fd, err)
	}
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return nil, nil, fmt.Errorf("fd %d: not a stream socket", fd)
	}
	f := os.NewFile(uintptr(fd), "vhost-user")
	defer f.Close()
	var c io.Closer
	if acc == 1 {
		c, err = net.FileListener(f)
	} else {
		c, err = net.FileConn(f)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	switch c := c.(type) {
	case *net.UnixListener:
		return c, nil, nil
	case *net.UnixConn:
		return nil, c, nil
	}
	c.Close()
	return nil, nil, fmt.Errorf("fd %d: not a unix socket", fd)
}

// ServeFd serves an inherited socket: a listening one until ctx ends, a
// connected one until it closes.
func (s *Server) ServeFd(ctx context.Context, fd int) error {
	ln, uc, err := s.listenerFromFd(fd)
	if err != nil {
		return err
	}
	if uc != nil {
		if !s.admit(uc, "front-end") {
			return fmt.Errorf("fd %d: front-end refused by the peer policy", fd)
		}
		return s.ServeConn(ctx, uc)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return s.Serve(ctx)
}

// Serve accepts connections on the listener from Listen and serves them
// one after another until ctx ends or Close is called.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("serve: not listening")
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || s.isClosed() {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if !s.admit(uc, "front-end") {
			continue
		}
		if err := s.ServeConn(ctx, uc); err != nil {
			s.log.Warn("connection ended", "error", err)
		}
	}
}

// DialAndServe connects to a front-end listening at path (--client) and
// serves the connection; when it ends, or while the front-end is not there,
// it retries every retry interval until ctx ends.
func (s *Server) DialAndServe(ctx context.Context, path string, retry time.Duration) error {
	var d net.Dialer
	logged := false
	for ctx.Err() == nil && !s.isClosed() {
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			if !logged {
				s.log.Info("front-end not there yet, retrying", "path", path, "error", err, "every", retry)
				logged = true
			}
			sleepCtx(ctx, retry)
			continue
		}
		logged = false
		if !s.admit(c.(*net.UnixConn), "front-end listener") {
			sleepCtx(ctx, retry)
			continue
		}
		if err := s.ServeConn(ctx, c.(*net.UnixConn)); err != nil {
			s.log.Warn("connection ended", "error", err)
		}
	}
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bool(s.closed)
}

// ServeConn runs one vhost-user session on uc until the front-end
// disconnects, a fault forces the connection closed, or ctx ends. Every
// mapping and fd of the session is released before it returns.
func (s *Server) ServeConn(ctx context.Context, uc *net.UnixConn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		uc.Close()
		return nil
	}
	s.conn = uc
	s.sessions++
	id := s.sessions
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()

	log := s.log.With("conn", id)
	log.Info("front-end connected")
	sess := newSession(log, s.dev, newMsgConn(uc), s.lim)
	err := loop(sess)
	sess.teardown()
	uc.Close()
	s.mu.Lock()
	s.conn = nil
	s.mu.Unlock()
	log.Info("front-end disconnected", "reason", errString(err))
	if errors.Is(err, io.EOF) || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func errString(err error) string {
	if err == nil || errors.Is(err, io.EOF) {
		return "closed by front-end"
	}
	return err.Error()
}

// loop handles messages until one ends the connection. A framing fault is
// logged here, as every other refusal is in session.refuse.
func loop(sess *session) error {
	for {
		if err := sess.next(); err != nil {
			var fe *FramingError
			if errors.As(err, &fe) {
				sess.lim.log(sess.log, "rejected message, closing connection", "request", fe.Req.String(), "field", fe.Field, "reason", fe.Reason)
			}
			return err
		}
	}
}

// Close stops accepting, ends the current connection (releasing its
// memory and fds) and removes the socket file Listen created. It is safe to
// call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed.Set() {
		s.mu.Unlock()
		return nil
	}
	ln, conn, path, ino := s.ln, s.conn, s.path, s.ino
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if conn != nil {
		conn.Close()
	}
	if path != "" {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Ino == ino {
			os.Remove(path)
		}
	}
	return nil
}
