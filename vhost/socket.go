package vhost

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// SocketOptions are the listening socket's file attributes (--socket-mode,
// --socket-group, and the owner --runas needs). The zero value, with UID
// and GID -1, leaves the file as bind creates it (0777 less the umask).
type SocketOptions struct {
	Mode     os.FileMode // permission bits; 0 = as bind creates it
	UID, GID int         // owner and group; -1 = unchanged
}

func (o SocketOptions) isDefault() bool { return o.Mode == 0 && o.UID < 0 && o.GID < 0 }

// PeerPolicy admits front-ends by their SO_PEERCRED credentials (the
// process that connected, or the one listening in --client mode): a peer
// is admitted when its uid is in UIDs or its gid in GIDs. Both empty
// admits everyone. The gid is the peer's effective gid at connect time;
// supplementary groups are not seen.
type PeerPolicy struct {
	UIDs, GIDs []int
}

func (p PeerPolicy) admits(c *unix.Ucred) bool {
	if len(p.UIDs) == 0 && len(p.GIDs) == 0 {
		return true
	}
	return slices.Contains(p.UIDs, int(c.Uid)) || slices.Contains(p.GIDs, int(c.Gid))
}

// SetSocketOptions sets the attributes Listen gives the socket file.
func (s *Server) SetSocketOptions(o SocketOptions) {
	s.mu.Lock()
	s.sockOpts = o
	s.mu.Unlock()
}

// SetPeerPolicy sets which front-ends are served; the others are logged
// with their uid, gid and pid and disconnected.
func (s *Server) SetPeerPolicy(p PeerPolicy) {
	s.mu.Lock()
	s.peers = p
	s.mu.Unlock()
}

// listenUnix creates the listening socket at path with the attributes o.
// With non-default attributes it binds inside a fresh 0700 directory next
// to path, sets the owner, group and mode there, where no one else can
// reach it, and renames it into place: the socket is never reachable with
// wider permissions than asked.
func listenUnix(path string, o SocketOptions) (*net.UnixListener, error) {
	if o.isDefault() {
		return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".vhostd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	if len(tmp) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("--socket-mode/--socket-group bind at %s first: %d bytes, more than a unix socket path holds", tmp, len(tmp))
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := setSocketAttrs(tmp, o); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func setSocketAttrs(path string, o SocketOptions) error {
	if o.UID >= 0 || o.GID >= 0 {
		if err := os.Lchown(path, o.UID, o.GID); err != nil {
			return fmt.Errorf("owner %d group %d: %w", o.UID, o.GID, err)
		}
	}
	if o.Mode != 0 {
		if err := os.Chmod(path, o.Mode.Perm()); err != nil {
			return fmt.Errorf("mode %#o: %w", o.Mode.Perm(), err)
		}
	}
	return nil
}

// admit checks a new connection's peer against the policy. A refused or
// unreadable peer is logged and closed; admit then returns false.
func (s *Server) admit(uc *net.UnixConn, side string) bool {
	s.mu.Lock()
	p := s.peers
	s.mu.Unlock()
	if len(p.UIDs) == 0 && len(p.GIDs) == 0 {
		return true
	}
	cred, err := peerCred(uc)
	if err == nil && p.admits(cred) {
		return true
	}
	if err != nil {
		s.lim.log(s.log, "refused "+side+": no peer credentials", "error", err)
	} else {
		s.lim.log(s.log, "refused "+side+": peer not allowed by --allow-uid/--allow-gid",
			"uid", cred.Uid, "gid", cred.Gid, "pid", cred.Pid)
	}
	uc.Close()
	return false
}

func peerCred(uc *net.UnixConn) (*unix.Ucred, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}
