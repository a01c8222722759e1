package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

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

// startWatchdog pings systemd's watchdog (WatchdogSec=, which sets
// $WATCHDOG_USEC and $WATCHDOG_PID) at half its interval, each time after
// alive has returned: alive takes the device's control-plane lock, so a
// control plane stuck on it stops the pings and systemd restarts vhostd.
// Without the variables (or for another PID) it does nothing. stop ends
// the pings.
func startWatchdog(log hclog.Logger, alive func()) (stop func()) {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 {
		return func() {}
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return func() {}
	}
	tick := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
	done := make(chan struct{})
	go func() {
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			alive()
			notify(log, "WATCHDOG=1")
		}
	}()
	return func() { close(done) }
}
