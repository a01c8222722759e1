// Package vhost speaks the vhost-user protocol (QEMU docs/interop/vhost-user.rst)
// as a back-end and drives a Device.
//
//	unix socket --msgConn.readHeader--> Msg (12-byte header, SCM_RIGHTS fds)
//	   --session.precheck--> the request's rule (requests.go): fds, size,
//	                         protocol feature, all from the header
//	   --msgConn.readPayload--> exact payload
//	   --rule.do--> validate everything --> change session state
//	                                    --> Device (features, memory, rings)
//	   <--reply / REPLY_ACK--
//
// Files: session.go holds the session state, the message pipeline and the
// feature and device requests; requests.go the table of requests; ring.go
// the vrings; memtable.go the memory table; msg.go the wire format;
// errors.go the three ways a message fails; server.go the sockets.
//
// A Server listens on a socket path, connects to a front-end as a client,
// or adopts an inherited fd (the back-end program conventions). It serves
// one connection at a time; when the connection ends, every mapping and fd
// the session held is released and the device is reset.
//
// Every message is checked completely before any state changes: a rejected
// message changes nothing, its fds are closed, the front-end gets a failure
// reply where one is due, and one rate-limited log line names the request
// and the field. A message whose header already condemns it is answered
// before its payload is read, and the payload is then skipped. Faults in the
// framing itself close the connection.
package vhost
