// Command blast is the guest's half of the qemu-tests load (qemu-tests/load.go): it sends UDP
// datagrams to HOST:PORT as fast as the guest manages until SIGTERM or SIGINT, then prints
//
//	BLAST sent=N errors=M
//
// The host counts what arrives. Datagrams carry a sequence number in their first 8 bytes and
// cycle through a few sizes, so both small and full-size TX chains go through the ring. The
// socket is non-blocking: when the guest's queue is full or its link is down, blast waits a
// little and tries again, so it never hangs on a ring the back-end has stopped serving, and it
// always answers SIGTERM. It is built static (CGO_ENABLED=0) into the guest's initramfs.
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// sizes are the UDP payload sizes, in turn (the largest fills a 1500-byte MTU frame).
var sizes = []int{18, 200, 1472, 600, 1472}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: blast HOST PORT")
		os.Exit(2)
	}
	ip := net.ParseIP(os.Args[1]).To4()
	port, err := strconv.Atoi(os.Args[2])
	if ip == nil || err != nil {
		fmt.Fprintf(os.Stderr, "blast: bad address %s:%s\n", os.Args[1], os.Args[2])
		os.Exit(2)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "blast: socket: %v\n", err)
		os.Exit(1)
	}
	to := &syscall.SockaddrInet4{Port: port}
	copy(to.Addr[:], ip)

	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		stop.Store(true)
	}()

	buf := make([]byte, 1472)
	var sent, errs, seq uint64
	for !stop.Load() {
		binary.BigEndian.PutUint64(buf, seq)
		n := sizes[seq%uint64(len(sizes))]
		seq++
		err := syscall.Sendto(fd, buf[:n], 0, to)
		switch {
		case err == nil:
			sent++
		case err == syscall.EAGAIN:
			// The socket's send buffer is full: the queue is full or not being served.
			time.Sleep(200 * time.Microsecond)
		default:
			// ENOBUFS, ENETUNREACH, ECONNREFUSED (an ICMP error from an earlier datagram),
			// EHOSTUNREACH while the link is down: count and go on.
			errs++
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Printf("BLAST sent=%d errors=%d\n", sent, errs)
}
