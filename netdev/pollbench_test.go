package netdev

import "testing"

// BenchmarkPollIdle is one worker round of a pair with nothing to do:
// what every poll pays before any work (busy-poll mode runs it back to
// back).
func BenchmarkPollIdle(b *testing.B) {
	p := newPair(&Device{}, 0, nil)
	for i := 0; i < b.N; i++ {
		p.Poll(budget)
	}
}
