// Package sandbox confines vhostd once its setup is done: the host
// interface is open, XDP is attached and the vhost-user socket listens.
// Apply then, in this order,
//
//   - turns PR_SET_DUMPABLE off (no core dump of guest memory, no ptrace
//     by the same uid, /proc/PID files owned by root);
//   - with --runas, sets the groups and then the uid on every thread,
//     keeping the permitted capabilities across the change;
//   - reduces every capability set of every thread (effective, permitted,
//     bounding) to Config.Keep, and clears the inheritable and ambient sets;
//   - sets PR_SET_NO_NEW_PRIVS on every thread;
//   - installs the seccomp allow-list (seccomp.go) on every thread (TSYNC).
//
// Capabilities, securebits and no_new_privs are per-thread in Linux and a
// Go program runs on many threads, so every change goes through libcap's
// psx mechanism (kernel.org/pub/linux/libs/security/libcap), which runs
// the system call on all threads with and without cgo; syscall.Setuid
// alone would do it for the uid but not for capabilities.
//
// The package is a leaf: it knows nothing of vhostd's devices.
package sandbox

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// Identity is the unprivileged user and group of --runas.
type Identity struct {
	User, Group string // as given, for messages
	UID, GID    int
}

// ParseRunAs resolves "USER[:GROUP]" (names or numeric ids). Without a
// GROUP the user's primary group is used.
func ParseRunAs(spec string) (*Identity, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || (hasGroup && group == "") {
		return nil, fmt.Errorf("--runas %q: want USER or USER:GROUP", spec)
	}
	id := &Identity{User: name, Group: group}
	u, err := lookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("--runas %q: %w", spec, err)
	}
	if id.UID, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("--runas %q: user %s has a non-numeric uid %q", spec, name, u.Uid)
	}
	if id.UID == 0 {
		return nil, fmt.Errorf("--runas %q: uid 0 is not an unprivileged user", spec)
	}
	if !hasGroup {
		id.Group = u.Gid
		id.GID, err = strconv.Atoi(u.Gid)
		if err != nil {
			return nil, fmt.Errorf("--runas %q: user %s has a non-numeric gid %q", spec, name, u.Gid)
		}
		return id, nil
	}
	if id.GID, err = LookupGroup(group); err != nil {
		return nil, fmt.Errorf("--runas %q: %w", spec, err)
	}
	return id, nil
}

// lookupUser finds a user by name or, if that fails and name is a
// number, by uid.
func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, nerr := strconv.Atoi(name); nerr == nil {
		return user.LookupId(name)
	}
	return nil, err
}

// LookupGroup returns the gid of a group name or numeric gid.
func LookupGroup(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("group %q: negative gid", group)
		}
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// Config says what Apply keeps.
type Config struct {
	// Keep is the capabilities kept effective and permitted (and in the
	// bounding set); every other one is dropped.
	Keep []cap.Value
	// RunAs, if set, is the identity the process drops to.
	RunAs *Identity
	// Seccomp is the allow-list's action for calls outside it.
	Seccomp SeccompMode
	// IOURing adds io_uring's calls to the allow-list (--tap-write uring).
	IOURing bool
}

// Apply confines the process as Config says; see the package comment. An
// error leaves the process partly confined: the caller must exit.
func Apply(c Config) error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: PR_SET_DUMPABLE: %w", err)
	}
	held, err := dropBound(c.Keep)
	if err != nil {
		return fmt.Errorf("sandbox: dropping capabilities: %w", err)
	}
	if c.RunAs != nil {
		if err := cap.SetGroups(c.RunAs.GID); err != nil {
			return fmt.Errorf("sandbox: --runas: setgroups/setgid %d: %w", c.RunAs.GID, err)
		}
		if err := cap.SetUID(c.RunAs.UID); err != nil {
			return fmt.Errorf("sandbox: --runas: setuid %d: %w", c.RunAs.UID, err)
		}
	}
	if err := setCaps(held); err != nil {
		return fmt.Errorf("sandbox: dropping capabilities: %w", err)
	}
	if _, err := cap.Prctlw(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: PR_SET_NO_NEW_PRIVS: %w", err)
	}
	return installSeccomp(c.Seccomp, c.IOURing)
}

// dropBound clears the ambient set and reduces the bounding set to the
// capabilities of keep the process holds, and returns those. Without
// CAP_SETPCAP the bounding set cannot shrink; that happens only when
// vhostd did not start with it, and setCaps still reduces the permitted
// set, which is what counts.
func dropBound(keep []cap.Value) ([]cap.Value, error) {
	cur := cap.GetProc()
	var held []cap.Value
	for _, v := range keep {
		if ok, err := cur.GetFlag(cap.Permitted, v); err == nil && ok {
			held = append(held, v)
		}
	}
	if err := cap.ResetAmbient(); err != nil && !errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("clearing the ambient set: %w", err)
	}
	if setpcap, _ := cur.GetFlag(cap.Effective, cap.SETPCAP); setpcap {
		var drop []cap.Value
		for v := cap.Value(0); v < cap.MaxBits(); v++ {
			if !contains(held, v) {
				drop = append(drop, v)
			}
		}
		if err := cap.DropBound(drop...); err != nil {
			return nil, fmt.Errorf("shrinking the bounding set: %w", err)
		}
	}
	return held, nil
}

// setCaps sets every thread's effective and permitted sets to held and
// empties the inheritable set.
func setCaps(held []cap.Value) error {
	s := cap.NewSet()
	if err := s.SetFlag(cap.Permitted, true, held...); err != nil {
		return err
	}
	if err := s.SetFlag(cap.Effective, true, held...); err != nil {
		return err
	}
	return s.SetProc()
}

func contains(vs []cap.Value, v cap.Value) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}
