package testutil

import "time"

// WaitFor calls cond every interval until it returns true or d has passed,
// and reports whether it returned true. The caller fails the test, so that
// its message can say what the state was at the deadline.
func WaitFor(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}
