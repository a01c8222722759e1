package vhost

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What the fds a front-end sends are, checked where they are received
// (issue 15). A kick, call or err fd of another kind would make the data
// path block on it or make epoll refuse it; a region fd on a filesystem
// whose page faults can wait on I/O would stall the worker that touches
// guest memory.

// eventfdLink is what /proc/self/fd shows for an eventfd: the name the
// kernel gives its anonymous inode.
const eventfdLink = "anon_inode:[eventfd]"

// fdKind describes fd for error messages ("a pipe", "a memfd", "a regular
// file", ...) and reports whether it is an eventfd.
//
// An eventfd is told apart by two facts a front-end cannot fake together:
// fstatfs reports the anonymous-inode filesystem, on which nothing has a
// path, and /proc/self/fd names the inode "[eventfd]", the name only the
// kernel's eventfd gives. Reading fdinfo's "eventfd-count:" would work
// too, but costs an open, a read and a parse for the same answer. When
// /proc cannot be read the fd is refused, never assumed to be an eventfd.
func fdKind(fd int) (kind string, isEventfd bool) {
	var fs unix.Statfs_t
	var st unix.Stat_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return fmt.Sprintf("not usable (fstatfs: %v)", err), false
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Sprintf("not usable (fstat: %v)", err), false
	}
	if uint32(fs.Type) == unix.ANON_INODE_FS_MAGIC {
		link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		switch {
		case err != nil:
			return fmt.Sprintf("an anonymous inode /proc cannot name (%v)", err), false
		case link == eventfdLink:
			return "an eventfd", true
		}
		name := strings.TrimSuffix(strings.TrimPrefix(link, "anon_inode:"), "]")
		return "a " + strings.TrimPrefix(name, "[") + " (" + link + ")", false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a pipe", false
	case unix.S_IFSOCK:
		return "a socket", false
	case unix.S_IFDIR:
		return "a directory", false
	case unix.S_IFCHR:
		return "a character device", false
	case unix.S_IFBLK:
		return "a block device", false
	case unix.S_IFREG:
		if isMemfd(fd) {
			return "a memfd", false
		}
		return "a regular file", false
	}
	return fmt.Sprintf("of file type %#o", st.Mode&unix.S_IFMT), false
}

// isMemfd reports whether /proc/self/fd names fd a memfd.
func isMemfd(fd int) bool {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && strings.HasPrefix(link, "/memfd:")
}

// fsNames are the filesystems a front-end's fd is likely to live on.
var fsNames = map[uint32]string{
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.HUGETLBFS_MAGIC:       "hugetlbfs",
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.PIPEFS_MAGIC:          "pipefs",
	unix.SOCKFS_MAGIC:          "sockfs",
	unix.ANON_INODE_FS_MAGIC:   "anon_inodefs",
	unix.PROC_SUPER_MAGIC:      "proc",
	unix.SYSFS_MAGIC:           "sysfs",
	unix.DEVPTS_SUPER_MAGIC:    "devpts",
	unix.V9FS_MAGIC:            "9p",
}

// fsName names a filesystem by its statfs magic number.
func fsName(magic int64) string {
	if n, ok := fsNames[uint32(magic)]; ok {
		return n
	}
	return fmt.Sprintf("filesystem %#x", uint32(magic))
}

// checkVringFd refuses a kick, call or err fd that is not an eventfd.
// which is "kick", "call" or "err"; fd -1 (none) passes.
func checkVringFd(i int, which string, fd int) error {
	if fd < 0 {
		return nil
	}
	if kind, ok := fdKind(fd); !ok {
		return reject("fd", "vring %d %s fd is %s, want an eventfd", i, which, kind)
	}
	return nil
}

// checkKickFd refuses a kick that is not an eventfd, and a kick without an
// fd (BAD-INPUTS 57). vhost-user.rst gives the no-fd flag on
// SET_VRING_KICK the meaning "poll the ring instead of waiting for kicks";
// QEMU never sends it (its kick is always an event notifier). vhostd's
// workers sleep on the kick eventfd when a ring is idle, so polling would
// have to spin on the ring for as long as it runs: one message could cost a
// CPU without bound. The front-end learns at setup instead (a failure
// REPLY_ACK), and a running ring keeps the kick it had.
func checkKickFd(i, fd int) error {
	if fd < 0 {
		return reject("fd", "vring %d: kick without an fd (polling mode) is not supported, send an eventfd", i)
	}
	return checkVringFd(i, "kick", fd)
}

// checkRegionFd checks the fd of a memory region before it is mapped
// (BAD-INPUTS 58, 59); field names the region in the refusal. Guest memory
// must be on tmpfs (shmem, which memfds are) or hugetlbfs: a page fault
// there waits for a page to be zeroed, never for I/O, whereas a file on a
// disk or network filesystem (or FUSE, served by whoever made it) can stall
// the worker that touches guest memory for as long as that filesystem
// likes. A memfd that can still shrink is accepted, with one warning per
// session: QEMU seals its memfds (F_SEAL_SHRINK, F_SEAL_GROW), but a
// front-end that truncates an unsealed one pulls pages from under the
// mapping.
func (s *session) checkRegionFd(field string, fd int) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return reject(field, "fstatfs of the region fd: %v", err)
	}
	if t := uint32(fs.Type); t != unix.TMPFS_MAGIC && t != unix.HUGETLBFS_MAGIC {
		kind, _ := fdKind(fd)
		return reject(field, "fd is %s on %s: guest memory must be on tmpfs (shmem, memfd) or hugetlbfs", kind, fsName(fs.Type))
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if !s.warnedUnsealed && (err != nil || seals&unix.F_SEAL_SHRINK == 0) {
		s.warnedUnsealed = true
		s.log.Warn("guest memory fd not sealed against shrinking (F_SEAL_SHRINK): accepted, but a front-end that truncates it makes guest accesses fault (warned once per connection)",
			"region", field, "fs", fsName(fs.Type))
	}
	return nil
}
