// Package virtqueue owns guest memory and the device side of split
// virtqueues.
//
//	vhost memory table --> Memory (regions, GPA / front-end VA translation)
//	                         |
//	guest avail ring --> Queue.PopBatch --> Chain (copied, validated descriptors)
//	                                          |  iovecs into guest memory
//	Chain done --> Queue.PushBatch --> used ring --> call, if the guest asked
//
// Every address the guest or the front-end gives is translated through a
// bounds-checked accessor. Descriptors and headers are copied out of guest
// memory once and only the copies are used: the guest can rewrite its memory
// while we read it. Code touching shared memory with atomics or unsafe lives
// in files named *_unsafe.go.
package virtqueue
