module github.com/vhostd/vhostd/perf/peers

go 1.26.8

require github.com/vhostd/vhostd v0.0.0

require github.com/Workiva/go-datastructures v1.1.7

replace github.com/vhostd/vhostd => ../..
