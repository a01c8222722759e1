package vhosttest

import (
	"os"
	"strconv"
	"strings"
)

// FdsMatching counts this process's fds whose /proc/self/fd link contains
// s (a memfd shows as "/memfd:NAME (deleted)").
func FdsMatching(s string) int {
	return countFds(func(fd string) bool {
		l, err := os.Readlink("/proc/self/fd/" + fd)
		return err == nil && strings.Contains(l, s)
	})
}

// countFds counts this process's fds (their /proc/self/fd names) for which
// match is true; -1 if /proc cannot tell.
func countFds(match func(fd string) bool) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if match(e.Name()) {
			n++
		}
	}
	return n
}

// MapsCount counts the lines of /proc/self/maps that mention "memfd:"+name
// followed by a space (one line per mapping of a memfd of exactly that
// name).
func MapsCount(name string) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "/memfd:"+name+" ") {
			n++
		}
	}
	return n
}

// EventfdID returns the "eventfd-id:" of fd's /proc/self/fdinfo entry: the
// kernel's number for that eventfd, the same in every copy of the fd and
// unique among eventfds. ok is false when fd is not an eventfd or the
// kernel does not show the id.
func EventfdID(fd int) (id string, ok bool) {
	return eventfdID("/proc/self/fdinfo/" + strconv.Itoa(fd))
}

// eventfdID reads the eventfd-id line of one fdinfo file.
func eventfdID(fdinfo string) (id string, ok bool) {
	b, err := os.ReadFile(fdinfo)
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(l, "eventfd-id:"); found {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// EventfdCopies counts this process's fds that are the eventfd with the
// given EventfdID.
func EventfdCopies(id string) int {
	return countFds(func(fd string) bool {
		got, ok := eventfdID("/proc/self/fdinfo/" + fd)
		return ok && got == id
	})
}
