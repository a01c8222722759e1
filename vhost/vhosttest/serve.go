package vhosttest

import (
	"context"
	"testing"

	"github.com/vhostd/vhostd/vhost"
)

// Serve serves dev through a vhost.Server to a new front-end over a
// socketpair, as a test's back-end. Cleanup closes the front-end and waits
// for the session to end; the device is the caller's to close (register
// its cleanup before calling Serve, so that it runs after the session's).
func Serve(t testing.TB, dev vhost.Device) *FrontEnd {
	t.Helper()
	srv := vhost.NewServer(dev, nil)
	fe, be, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.ServeConn(context.Background(), be); close(done) }()
	t.Cleanup(func() {
		fe.Close()
		<-done
	})
	return fe
}
