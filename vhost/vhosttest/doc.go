// Package vhosttest is a vhost-user front-end that plays QEMU, for tests
// and benchmarks of a back-end (vhost.Server with any vhost.Device).
//
//	FrontEnd --unix socket (header, payload, SCM_RIGHTS fds)--> back-end
//	   |  guest memory: one memfd per Region, mmap'd here and sent in
//	   |  SET_MEM_TABLE (the back-end maps its own copy)
//	   |  Ring i: a vqdriver.Driver over that memory (desc/avail/used and a
//	   |  buffer heap), kick/call/err eventfds
//	   +--Kick(i)--> kick eventfd       <--call eventfd-- WaitCall(i)
//
// Two levels of API:
//
//   - Raw: SendRaw writes any header (request, flags, size) with any
//     payload and any fds; SendBytes writes arbitrary bytes; ReadReply reads
//     one reply. Bad-input tests use these to send what no real front-end
//     would.
//   - High level, in QEMU's order: Negotiate (GET_FEATURES, SET_OWNER,
//     GET/SET_PROTOCOL_FEATURES, SET_FEATURES), SetMemTable (memfd regions
//     with any GPA / user-address layout), SetupRing / SetupRings (driver-side
//     split rings laid out in guest memory, SET_VRING_NUM/BASE/ADDR with
//     user addresses, KICK/CALL/ERR eventfds), Enable, GetVringBase, Kick,
//     WaitCall, Close. The single-message helpers (SetVringNum, SetVringKick,
//     SetStatus, ...) let a test stop a handshake after any message.
//
// The data path goes through Ring.Driver (virtqueue/vqdriver): AddChain,
// Publish, Used. Addresses handed to the driver are guest physical; the
// front-end translates them to user addresses when it talks to the
// back-end, exactly as QEMU does.
//
// NullDevice is the back-end's half for tests of the protocol layer alone: a
// vhost.Device that negotiates like a real one, records what it was told
// (State) and moves no data.
//
// A FrontEnd is not safe for concurrent use. MapsCount and FdsMatching
// read /proc/self to let tests assert that an in-process back-end released
// what it was given (internal/privtest.OpenFds counts all fds). LogAuditor
// checks a device's dirty logging against guest memory.
package vhosttest
