package vhosttest

import (
	"os"
	"strings"
)

// FdsMatching counts this process's fds whose /proc/self/fd link contains
// s (a memfd shows as "/memfd:NAME (deleted)").
func FdsMatching(s string) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.Contains(l, s) {
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
