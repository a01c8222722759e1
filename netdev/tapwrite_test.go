package netdev

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vhostd/vhostd/tap"
)

// standInWriteMode gives a TAP stand-in an io_uring when
// VHOSTD_TEST_TAP_WRITE=uring, so that the whole package's tests run the
// TX path through either write mode.
func standInWriteMode(t testing.TB, q *tap.Queue) {
	if os.Getenv("VHOSTD_TEST_TAP_WRITE") != "uring" {
		return
	}
	if err := q.UseWriteRing(slotCount); err != nil {
		t.Fatal(err)
	}
}

func TestParseTAPWrite(t *testing.T) {
	for _, s := range []string{"auto", "write", "uring"} {
		w, err := ParseTAPWrite(s)
		if err != nil || w.String() != s {
			t.Fatalf("ParseTAPWrite(%q) = %v, %v", s, w, err)
		}
	}
	if _, err := ParseTAPWrite("io_uring"); err == nil || !strings.Contains(err.Error(), `"io_uring"`) {
		t.Fatalf("ParseTAPWrite(io_uring) = %v, want an error naming the value", err)
	}
	if err := (&Config{TAP: "x", QueuePairs: 1, TAPWrite: 7}).Validate(); err == nil || !strings.Contains(err.Error(), "7") {
		t.Fatalf("Validate with TAPWrite 7 = %v", err)
	}
}

// Auto takes io_uring only when the calibration says it is faster, and
// write(2) when the calibration cannot run; a forced mode never calibrates.
func TestChooseTAPWrite(t *testing.T) {
	defer func(c func(time.Duration) (tap.Calibration, error)) { calibrate = c }(calibrate)
	calls := 0
	var res tap.Calibration
	var err error
	calibrate = func(time.Duration) (tap.Calibration, error) { calls++; return res, err }
	log := hclog.NewNullLogger()
	for _, tc := range []struct {
		cal      tap.Calibration
		err      error
		want     TAPWrite
		wantBy   string
		in       TAPWrite
		calibrat bool
	}{
		{tap.Calibration{WriteNs: 1200, UringNs: 1000, Rounds: 5}, nil, TAPWriteUring, "calibration", TAPWriteAuto, true},
		{tap.Calibration{WriteNs: 1000, UringNs: 990, Rounds: 5}, nil, TAPWriteSyscall, "calibration", TAPWriteAuto, true},
		{tap.Calibration{WriteNs: 1000, UringNs: 1200, Rounds: 5}, nil, TAPWriteSyscall, "calibration", TAPWriteAuto, true},
		{tap.Calibration{}, errors.New("operation not permitted"), TAPWriteSyscall, "calibration failed: operation not permitted", TAPWriteAuto, true},
		{tap.Calibration{}, nil, TAPWriteUring, "config", TAPWriteUring, false},
		{tap.Calibration{}, nil, TAPWriteSyscall, "config", TAPWriteSyscall, false},
	} {
		calls, res, err = 0, tc.cal, tc.err
		got, ch := chooseTAPWrite(tc.in, log)
		if got != tc.want || ch.Mode != tc.want.String() || ch.By != tc.wantBy || (calls == 1) != tc.calibrat {
			t.Fatalf("%+v: got %v %+v, %d calibrations", tc, got, ch, calls)
		}
		if tc.calibrat && tc.err == nil && (ch.WriteNs != tc.cal.WriteNs || ch.UringNs != tc.cal.UringNs) {
			t.Fatalf("figures %+v, want %+v", ch, tc.cal)
		}
	}
}

// BAD-INPUTS 80: --tap-write uring where a queue cannot get its io_uring
// (here a queue already closed; io_uring disabled by sysctl or seccomp
// fails the same way, at io_uring_setup) is an error naming the flag and
// the queue; nothing is half set up.
func TestBadInput80TAPWriteUringUnavailable(t *testing.T) {
	host := newFakeHost(t, 2)
	host.queues[1].Close()
	_, err := newDevice(Config{QueuePairs: 2, TAP: "fake", TAPWrite: TAPWriteUring}, hclog.NewNullLogger(), host)
	if err == nil || !strings.Contains(err.Error(), "--tap-write uring, queue 1 of fake") {
		t.Fatalf("newDevice = %v, want an error naming --tap-write uring and queue 1", err)
	}
}
