// Package peers holds benchmarks of vhostd's data-path pieces against published Go
// libraries. It is its own module so that those libraries never enter vhostd's go.mod;
// the replace directive builds it against the vhostd tree it sits in.
//
//	cd perf/peers && go test -run '^$' -bench . -benchtime 2000000x -count 5 ./...
//
// ptrringpeers: ptrring.Ring against github.com/Workiva/go-datastructures/queue's
// RingBuffer (a bounded lock-free MPMC ring after Vyukov's design, items as interface{})
// and Go channels, one producer goroutine and one consumer, 1024 items of capacity,
// every item checked for order. Medians of 5 on the project's 2-vCPU AMD EPYC machine
// (05:04 UTC on 2026-11-22), nanoseconds per item, no allocation in any of them:
//
//	                      batch 1   batch 32
//	ptrring.Ring            10.3      1.39
//	Workiva RingBuffer      30.4     22.7    (no batch API: 32 Offers, 32 Gets)
//	chan *T / chan []*T     42.3      1.98
//
// The lock-free MPMC ring pays two compare-and-swaps per item and, with nothing to
// batch, gains nothing at batch 32; it still beats a channel at batch 1.
package peers
