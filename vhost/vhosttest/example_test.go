package vhosttest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
)

// A front-end starts a device the way QEMU does and moves one frame
// through ring 1 (transmit). With a device that processes rings (netdev),
// the completion arrives on the used ring and the call eventfd.
func Example() {
	dev := vhosttest.NewNullDevice(1<<32, 2) // VERSION_1, one queue pair
	srv := vhost.NewServer(dev, nil)
	fe, be, err := vhosttest.Pair()
	if err != nil {
		panic(err)
	}
	defer fe.Close()
	go srv.ServeConn(context.Background(), be)

	// Negotiate, 64 MiB of memfd guest memory at GPA 0, two rings of 256.
	err = fe.Start(1<<32, 1<<vhost.ProtoReplyAck, 2, 256, vhosttest.Layout{Size: 64 << 20})
	if err != nil {
		panic(err)
	}
	tx := fe.Ring(1).Driver
	hdr := make([]byte, 12) // virtio_net_hdr_v1
	frame := make([]byte, 60)
	if _, err := tx.AddChain([][]byte{hdr, frame}, nil); err != nil {
		panic(err)
	}
	if tx.Publish() {
		fe.Kick(1)
	}
	if fe.WaitCall(1, 100*time.Millisecond) == nil {
		for _, c := range tx.UsedAll() {
			fmt.Println("completed", c.Head, c.Len)
		}
	}
	base, _ := fe.GetVringBase(1)
	fmt.Println("stopped at", base)
}
