package qemutests

// QMP for a Bed: the guest's QEMU over its machine protocol socket.

import (
	"context"
	"time"

	"github.com/vhostd/vhostd/qemu-tests/guest"
)

// QMP connects to QEMU's QMP socket (BedConfig.QMP) the first time and returns the
// connection, closed at cleanup.
func (b *Bed) QMP() *guest.QMP {
	b.T.Helper()
	if b.qmp != nil {
		return b.qmp
	}
	if b.QMPPath == "" {
		b.T.Fatalf("the bed has no QMP socket (BedConfig.QMP)")
	}
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	q, err := guest.DialQMP(ctx, b.QMPPath)
	if err != nil {
		b.T.Fatalf("%v", err)
	}
	b.qmp = q
	b.T.Cleanup(func() { q.Close() })
	return q
}

// QMPDo runs a QMP command with a 30 s bound and fails the test on an error.
func (b *Bed) QMPDo(name string, args any) string {
	b.T.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	r, err := b.QMP().Execute(ctx, name, args)
	if err != nil {
		b.T.Fatalf("%v", err)
	}
	return string(r)
}
