package tap

// NewQueueFd wraps fd as a Queue. fd must carry one frame per read and per
// write, each with the 12-byte virtio-net header: a TAP queue opened
// elsewhere (a management layer may pass one in), or a datagram socketpair
// standing in for a TAP in tests. The Queue owns fd from now on; set it
// nonblocking first.
func NewQueueFd(fd, index int) *Queue { return &Queue{fd: fd, index: index} }
