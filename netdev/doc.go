// Package netdev is the virtio-net device: it implements vhost.Device and
// moves frames between the guest's queue pairs and the queues of one TAP or
// macvtap. It is the only package that knows virtqueue, tap, ptrring and
// busypoll together.
//
// # A queue pair
//
// Queue pair i is receive ring 2i, transmit ring 2i+1 and TAP queue i. Its
// work has two sides: the ring side touches guest memory (pop chains, write
// used entries, signal calls), the TAP side makes the syscalls. One
// busypoll worker per pair runs both, one after the other in each poll,
// and the ptrrings between them are the hand-off from one side to the
// other.
//
//	            ring side                        TAP side
//	TX   avail --PopBatch, prepare--> toTap --> writev to the TAP queue
//	     used  <--PushBatch, call---- done  <--/
//	RX   avail --PopBatch-----------> stock --> readv from the TAP queue
//	     used  <--PushBatch, call---- done  <--/ straight into the chain
//
// A chain waits in toTap or stock until the TAP side takes it, and in done
// until the ring side returns it. Nothing on this path allocates, locks or
// logs; each pair's counters have one writer, its worker (counters.go).
//
// # The ring-state invariant
//
// A front-end restarts a ring from one index: the base GET_VRING_BASE
// returned (QMP stop/cont, migration), or after a backend crash the used
// index it reads from guest memory. Both are exact only if, on each ring:
//
//  1. chains are completed in the order they were popped;
//  2. nothing popped is ever dropped: every chain counted in flight is in a
//     hand-off ring or being worked on, and comes back, filled, written,
//     or with length 0 if it was bad;
//  3. a stopped ring reports as its base the first chain not completed:
//     after settle its next avail index equals its next used index.
//
// The code keeps this by construction. Each ring's chains go through FIFO
// ptrrings only, so completion order is pop order (1). The hand-off rings
// hold twice the chains that can be in flight (handoffSize), so no hand-off
// is ever refused; each result is checked all the same: a short stock is
// unpopped, a refused finished chain is a broken invariant (2). settle
// finishes TX in flight, returns filled RX chains and rewinds the stocked
// ones, which are exactly the newest popped (3); pair.stop logs an error
// if the indexes ever differ. A ring the guest breaks (BROKEN-Q) hands its
// stocked chains back empty, the faulting head with them, in order.
//
// TestRingStateModel checks all of this against a reference model of the
// rings through random interleavings of traffic, stops, memory changes,
// crashes and broken rings, on split and packed rings, with and without
// IN_ORDER; FuzzRingStateModel lets the fuzzer choose them.
//
// # Packed rings and IN_ORDER
//
// A pair drives its rings through virtqueue.Ring, one interface call per
// batch, and does not know their layout (VIRTIO_F_RING_PACKED). For a
// packed ring the base is a position (slot, wrap counter in bit 15) for
// each side, avail in the low half, used in the high half; (3) then reads
// "avail position equals used position". After a backend crash there is
// no used index in guest memory to restart from, and QEMU sends the last
// base it knew: pair.start takes the position the ring's descriptors show
// instead (virtqueue Config.RingPosition, BAD-INPUTS 76). Dirty logging of
// a packed ring marks the descriptor ring, where used descriptors go.
//
// With VIRTIO_F_IN_ORDER the driver may assume (1), which holds anyway; a
// transmit ring then returns a batch as one used element on a split ring
// (virtqueue Config.InOrderTX). Receive rings keep one entry per buffer,
// with its length, and packed rings one used descriptor per chain.
package netdev
