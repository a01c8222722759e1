package virtqueue

// Chain is one descriptor chain popped from the avail ring: the validated
// copies of its descriptors, as iovecs into guest memory.
//
// Ownership: the Chain value and its backing storage belong to the caller,
// who builds it once with NewChain or NewChains and hands it to PopBatch
// again and again; PopBatch overwrites every field and never allocates. The
// iovecs alias guest memory: they stay valid while the memory table they
// were translated through is mapped (the control plane unmaps an old table
// only after every worker has completed its chains, DESIGN "Control plane").
// The guest may change the bytes they point to at any time, so whoever
// parses buffer contents (the virtio-net header) copies before checking.
type Chain struct {
	// Head is the descriptor index to return in the used ring.
	Head uint16
	// Out holds the device-readable buffers, in chain order; In the
	// device-writable ones. Out and In share one backing array. A buffer
	// that spans two adjacent memory regions takes two iovecs; zero-length
	// descriptors take none.
	Out, In [][]byte
	// OutLen and InLen are the byte totals of Out and In.
	OutLen, InLen uint32
	// Err is non-nil when the chain is malformed. Out and In are then empty
	// and the caller must still return the chain with PushBatch, length 0
	// (BAD-INPUTS 41). Err is one of the Err* values of this package:
	// DROP reasons (ErrBufferRange, ErrChainTooLong, ErrOrder,
	// ErrTooManySegments), or a reason matching ErrBroken when the chain
	// broke the queue.
	Err error

	nOutDesc, nInDesc uint32   // descriptors seen, zero-length ones included
	segs              [][]byte // backing storage: cap is the iovec limit
}

// NewChain returns a Chain that holds up to maxSegs iovecs. A chain that
// needs more is returned with Err == ErrTooManySegments. Linux limits a
// chain to UIO_MAXIOV (1024) iovecs; for virtio-net, 64 is plenty unless
// the guest uses tiny buffers.
func NewChain(maxSegs int) Chain {
	return Chain{segs: make([][]byte, 0, maxSegs)}
}

// NewChains returns n Chains of maxSegs iovecs each, backed by one
// allocation.
func NewChains(n, maxSegs int) []Chain {
	cs := make([]Chain, n)
	all := make([][]byte, n*maxSegs)
	for i := range cs {
		cs[i].segs = all[i*maxSegs : i*maxSegs : (i+1)*maxSegs]
	}
	return cs
}

// MaxSegs is the number of iovecs c can hold.
func (c *Chain) MaxSegs() int { return cap(c.segs) }

// Descs returns the number of device-readable and device-writable
// descriptors of the chain, zero-length ones included.
func (c *Chain) Descs() (out, in int) { return int(c.nOutDesc), int(c.nInDesc) }

// CheckTX returns ErrWritableInTX if the chain has any device-writable
// descriptor (BAD-INPUTS 35), else c.Err. The queue does not know whether
// it carries TX or RX; netdev calls this on its transmit queues and drops
// the chain (push length 0, count) on error.
func (c *Chain) CheckTX() error { return c.check(c.nInDesc, ErrWritableInTX) }

// CheckRX returns ErrReadableInRX if the chain has any device-readable
// descriptor (BAD-INPUTS 35), else c.Err. netdev calls it on receive queues.
func (c *Chain) CheckRX() error { return c.check(c.nOutDesc, ErrReadableInRX) }

// check returns c.Err, else wrongErr if the chain has wrong descriptors of
// the direction the queue does not carry, else nil.
func (c *Chain) check(wrong uint32, wrongErr error) error {
	if c.Err != nil {
		return c.Err
	}
	if wrong != 0 {
		return wrongErr
	}
	return nil
}

// reset prepares c for the chain starting at head.
func (c *Chain) reset(head uint16) {
	c.Head = head
	c.Out, c.In = nil, nil
	c.OutLen, c.InLen = 0, 0
	c.Err = nil
	c.nOutDesc, c.nInDesc = 0, 0
}

// fail marks c malformed with err and drops its iovecs.
func (c *Chain) fail(err error) {
	c.Out, c.In = nil, nil
	c.OutLen, c.InLen = 0, 0
	c.Err = err
}

// Used is one entry for the used ring: the chain's head and the number of
// bytes the device wrote into its device-writable buffers (0 for TX chains
// and for dropped ones).
type Used struct {
	Head uint16
	Len  uint32
}

// countDesc counts one descriptor of c as device-readable or -writable; a
// readable one after a writable one is ErrOrder (BAD-INPUTS 35), for split
// and packed chains alike.
func (c *Chain) countDesc(write bool) error {
	if write {
		c.nInDesc++
		return nil
	}
	if c.nInDesc != 0 {
		return ErrOrder
	}
	c.nOutDesc++
	return nil
}
