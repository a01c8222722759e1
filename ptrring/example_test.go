package ptrring_test

import (
	"fmt"

	"github.com/vhostd/vhostd/ptrring"
)

type frame struct{ n int }

// A producer hands frames to a consumer in batches; the caller owns both slices.
func Example() {
	r, err := ptrring.New[frame](8)
	if err != nil {
		panic(err)
	}
	in := []*frame{{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}}
	n := r.ProduceBatch(in) // takes what fits: 8
	fmt.Println("produced", n, "full", r.Full())

	out := make([]*frame, 4)
	for {
		k := r.ConsumeBatch(out)
		if k == 0 {
			break
		}
		for _, f := range out[:k] {
			fmt.Print(f.n, " ")
		}
	}
	fmt.Println()
	// Output:
	// produced 8 full true
	// 1 2 3 4 5 6 7 8
}
