// Package peers holds benchmarks of vhostd's data-path pieces against published Go
// libraries. It is its own module so that those libraries never enter vhostd's go.mod;
// the replace directive builds it against the vhostd tree it sits in.
//
//	cd perf/peers && go test -run '^$' -bench . -benchtime 2000000x -count 5 ./...
package peers
