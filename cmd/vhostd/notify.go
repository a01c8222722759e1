package main

import (
	"fmt"
	"net"
	"os"

	"github.com/hashicorp/go-hclog"
)

// sdNotify sends state (e.g. "READY=1") to the service manager, as
// Type=notify units expect: one datagram to the unix socket named by
// $NOTIFY_SOCKET (a path, or @name for an abstract socket, which the net
// package maps itself). Without $NOTIFY_SOCKET it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", path, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", path, err)
	}
	return nil
}

// notify tells the service manager about state, logging a failure: the
// daemon runs on either way (systemd then times the start out itself).
func notify(log hclog.Logger, state string) {
	if err := sdNotify(state); err != nil {
		log.Warn("cannot notify the service manager", "state", state, "error", err)
	}
}
