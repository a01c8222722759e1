package vqdriver

// Guest is what a test's guest does on a ring of either layout: post
// chains, publish them, read completions, arm and disarm interrupts.
// *Driver (split) and *PackedDriver implement it.
type Guest interface {
	AddChain(out [][]byte, in []int) (head uint16, err error)
	AddChainIndirect(out [][]byte, in []int) (head uint16, err error)
	Publish() (kick bool)
	Used() (Completion, bool)
	UsedAll() []Completion
	EnableInterrupts() (pending bool)
	DisableInterrupts()
}

var (
	_ Guest = (*Driver)(nil)
	_ Guest = (*PackedDriver)(nil)
)
