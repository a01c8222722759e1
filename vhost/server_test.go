package vhost_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

func TestListenStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	// A socket file left behind by a killed back-end.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	logs := &logBuf{}
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	srv := vhost.NewServer(dev, newLogger(logs, hclog.Info))
	if err := srv.Listen(path); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	if !logs.hasLine("removed stale socket") {
		t.Fatalf("log:\n%s", logs)
	}
	// A second server may not take the path of a live one.
	if err := vhost.NewServer(dev, nil).Listen(path); err == nil {
		t.Fatal("Listen on a live socket succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	fe, err := vhosttest.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fe.Sync(); err != nil {
		t.Fatal(err)
	}
	fe.Close()
	srv.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	// Not a socket.
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	if err := vhost.NewServer(dev, nil).Listen(file); err == nil {
		t.Fatal("Listen over a regular file succeeded")
	}
}

func TestServeFd(t *testing.T) {
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	t.Run("connected", func(t *testing.T) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fds[0]), "fe")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		fe := vhosttest.New(c.(*net.UnixConn))
		fe.Name = uniqueName("servefd")
		srv := vhost.NewServer(dev, nil)
		done := make(chan error, 1)
		go func() { done <- srv.ServeFd(context.Background(), fds[1]) }()
		if err := fe.Start(testFeatures, allProto, 2, 64, vhosttest.Layout{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		fe.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ServeFd: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ServeFd did not return after the front-end closed")
		}
	})
	t.Run("listening", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 4); err != nil {
			t.Fatal(err)
		}
		srv := vhost.NewServer(dev, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.ServeFd(ctx, fd) }()
		for i := 0; i < 2; i++ {
			fe, err := vhosttest.Dial(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := fe.Sync(); err != nil {
				t.Fatal(err)
			}
			fe.Close()
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("ServeFd: %v", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		var p [2]int
		unix.Pipe2(p[:], unix.O_CLOEXEC)
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		if err := vhost.NewServer(dev, nil).ServeFd(context.Background(), p[0]); err == nil {
			t.Fatal("ServeFd on a pipe succeeded")
		}
	})
}

func TestDialAndServe(t *testing.T) {
	// QEMU listens (server=on), vhostd connects (--client); the front-end
	// goes away and comes back, and the back-end reconnects.
	path := filepath.Join(t.TempDir(), "qemu.sock")
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	srv := vhost.NewServer(dev, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.DialAndServe(ctx, path, 20*time.Millisecond) }()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := 0; i < 2; i++ {
		ln.SetDeadline(time.Now().Add(5 * time.Second))
		c, err := ln.AcceptUnix()
		if err != nil {
			t.Fatal(err)
		}
		fe := vhosttest.New(c)
		fe.Name = uniqueName("client")
		if err := fe.Start(testFeatures, allProto, 2, 64, vhosttest.Layout{Size: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		fe.Close()
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("DialAndServe did not return")
	}
}
