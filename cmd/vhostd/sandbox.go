package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/internal/sandbox"
	"github.com/vhostd/vhostd/vhost"
	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// sandboxOptions are the --runas, --seccomp, --socket-* and --allow-*
// flags; README "Security" explains them.
type sandboxOptions struct {
	runAs, seccomp, socketMode, socketGroup, allowUID, allowGID string

	dials bool // --client: connects to the front-end after setup
	id    *sandbox.Identity
	mode  sandbox.SeccompMode
	sock  vhost.SocketOptions
	peers vhost.PeerPolicy
}

func (s *sandboxOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&s.runAs, "runas", "", "after setup, drop to this unprivileged `USER[:GROUP]` (names or ids)")
	fs.StringVar(&s.seccomp, "seccomp", "kill", "`MODE` of the system call allow-list installed after setup: kill (a call outside it kills vhostd), log (allowed, the kernel logs it) or off")
	fs.StringVar(&s.socketMode, "socket-mode", "", "permissions of the --socket-path socket, an octal `MODE` such as 0660 (default: 0777 less the umask)")
	fs.StringVar(&s.socketGroup, "socket-group", "", "`GROUP` (name or gid) of the --socket-path socket")
	fs.StringVar(&s.allowUID, "allow-uid", "", "serve only front-ends whose uid is in this comma-separated `LIST` (or whose gid is in --allow-gid)")
	fs.StringVar(&s.allowGID, "allow-gid", "", "serve only front-ends whose gid is in this comma-separated `LIST` (or whose uid is in --allow-uid)")
}

// parse validates the flags; listening says whether vhostd creates the
// socket (--socket-path without --client), dials whether it connects to
// the front-end's (--client).
func (s *sandboxOptions) parse(listening, dials bool) error {
	var err error
	s.dials = dials
	if s.mode, err = sandbox.ParseSeccompMode(s.seccomp); err != nil {
		return err
	}
	s.sock = vhost.SocketOptions{UID: -1, GID: -1}
	if s.runAs != "" {
		if s.id, err = sandbox.ParseRunAs(s.runAs); err != nil {
			return err
		}
		s.sock.UID = s.id.UID // so that it can remove the socket at exit (sticky /tmp)
	}
	if (s.socketMode != "" || s.socketGroup != "") && !listening {
		return fmt.Errorf("--socket-mode and --socket-group apply to the socket vhostd creates (--socket-path without --client)")
	}
	if s.socketMode != "" {
		m, err := strconv.ParseUint(s.socketMode, 8, 32)
		if err != nil || m > 0o777 || m == 0 {
			return fmt.Errorf("--socket-mode %q: want octal permissions such as 0660 (at most 0777, not 0)", s.socketMode)
		}
		s.sock.Mode = os.FileMode(m)
	}
	if s.socketGroup != "" {
		if s.sock.GID, err = sandbox.LookupGroup(s.socketGroup); err != nil {
			return fmt.Errorf("--socket-group %q: %w", s.socketGroup, err)
		}
	}
	if s.peers.UIDs, err = parseIDList("--allow-uid", s.allowUID); err != nil {
		return err
	}
	s.peers.GIDs, err = parseIDList("--allow-gid", s.allowGID)
	return err
}

// parseIDList parses a comma-separated list of numeric ids.
func parseIDList(flagName, s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var ids []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %q is not a numeric id", flagName, s, f)
		}
		ids = append(ids, int(n))
	}
	return ids, nil
}

// keptCaps is what vhostd still needs after setup. CAP_NET_ADMIN: the
// guest may change the MTU (VHOST_USER_NET_SET_MTU, always offered, is
// SIOCSIFMTU). CAP_BPF with XDP only on kernels before 6.5, where
// kernel.unprivileged_bpf_disabled also refuses map reads and updates on
// fds already open (the counters, the SIGHUP ACL reload).
//
// CAP_DAC_OVERRIDE with --client and no --runas: root connected to the
// front-end's socket whoever owns it (libvirt's mode='server' socket
// belongs to libvirt-qemu, mode 0755), and reconnects after setup. Without
// it such a socket refuses vhostd; --runas as a user who may connect (the
// socket's owner or group) drops it.
func keptCaps(xdpOn, dacOverride bool) []cap.Value {
	keep := []cap.Value{cap.NET_ADMIN}
	if dacOverride {
		keep = append(keep, cap.DAC_OVERRIDE)
	}
	if xdpOn && kernelBefore(6, 5) {
		keep = append(keep, cap.BPF)
	}
	return keep
}

func kernelBefore(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	var maj, min int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min)
	return maj < major || (maj == major && minor > min)
}

// configure sets the socket attributes and peer policy on srv; call it
// before the socket is created.
func (s *sandboxOptions) configure(srv *vhost.Server) {
	srv.SetSocketOptions(s.sock)
	srv.SetPeerPolicy(s.peers)
}

// apply confines the process: after the interface, XDP and the listening
// socket are set up, before the first connection is served.
func (s *sandboxOptions) apply(log hclog.Logger, xdpOn, uring bool) error {
	keep := keptCaps(xdpOn, s.dials && s.id == nil)
	if err := sandbox.Apply(sandbox.Config{Keep: keep, RunAs: s.id, Seccomp: s.mode, IOURing: uring}); err != nil {
		return err
	}
	names := make([]string, len(keep))
	for i, v := range keep {
		names[i] = v.String()
	}
	log.Info("sandboxed", "uid", os.Getuid(), "gid", os.Getgid(), "capabilities", strings.Join(names, ","), "seccomp", s.mode.String())
	return nil
}
