//go:build !race

package testutil

// Race reports whether the race detector is on: tests that loop many times
// scale down under it (it slows them by ten times or more).
const Race = false
