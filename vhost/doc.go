// Package vhost speaks the vhost-user protocol (QEMU docs/interop/vhost-user.rst)
// as a back-end and drives a Device.
//
//	unix socket --msgConn.read--> Msg (12-byte header, exact payload, SCM_RIGHTS fds)
//	   --session.handle--> validate everything --> change session state
//	                                           --> Device (features, memory, rings)
//	   <--reply / REPLY_ACK--
//
// A Server listens on a socket path, connects to a front-end as a client,
// or adopts an inherited fd (the back-end program conventions). It serves
// one connection at a time; when the connection ends, every mapping and fd
// the session held is released and the device is reset.
//
// Every message is checked completely before any state changes: a rejected
// message changes nothing, its fds are closed, the front-end gets a failure
// reply where one is due, and one rate-limited log line names the request
// and the field. Faults in the framing itself close the connection.
package vhost
