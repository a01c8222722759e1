package testutil

import (
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	n := 0
	if !WaitFor(time.Second, time.Millisecond, func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("WaitFor returned early or late: cond called %d times", n)
	}
	start := time.Now()
	if WaitFor(20*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Fatal("WaitFor reported a condition that never held")
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("WaitFor gave up after %v, before its 20 ms", el)
	}
}
