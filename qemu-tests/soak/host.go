package main

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket bound to the TAP for ethertype
// proto (0: send only).
func packetSocket(ifindex int, proto uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, nil
}

// hostSend writes batch host-to-guest frames into the TAP every tick
// until stop is closed.
func (in *inst) hostSend(fd int) {
	defer unix.Close(fd)
	buf := make([]byte, 2048)
	var seq uint64
	in.every(in.cfg.tick, func() bool {
		for i := 0; i < in.cfg.batch; i++ {
			seq++
			l := buildFrame(buf, typeH2G, seq, in.hostMAC, guestMAC)
			if _, err := unix.Write(fd, buf[:l]); err != nil {
				in.c.h2gSendErr.Add(1)
				continue
			}
			in.c.h2gSent.Add(1)
		}
		return true
	})
}

// hostRecv reads guest-to-host frames from the TAP and checks each one.
func (in *inst) hostRecv(fd int) {
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		in.setFail(fmt.Errorf("SO_RCVTIMEO: %w", err))
		return
	}
	buf := make([]byte, 4096)
	var last uint64
	for {
		select {
		case <-in.stop:
			return
		default:
		}
		n, err := unix.Read(fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			in.setFail(fmt.Errorf("reading the TAP's packet socket: %w", err))
			return
		}
		seq, v := checkFrame(buf[:n], typeG2H)
		switch v {
		case frameOK:
			if seq <= last {
				in.c.reorder.Add(1)
				in.setFail(fmt.Errorf("guest->host frame %d after %d (duplicated or reordered)", seq, last))
			}
			last = seq
			in.c.g2hRecv.Add(1)
		case frameBad:
			in.c.bad.Add(1)
			in.setFail(fmt.Errorf("guest->host frame %d corrupt (%d bytes)", seq, n))
		}
	}
}
