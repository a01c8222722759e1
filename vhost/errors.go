package vhost

import "fmt"

// The three ways a message fails (BAD-INPUTS "REJECT-MSG" and framing
// faults). session.refuse turns the first two into the answer the front-end
// gets; the server's loop logs the third and closes.

// rejectError refuses one message: the session keeps running and nothing
// was changed. field names what was wrong (a payload field, "size", "fds",
// "protocol_features", ...), reason says how; the log line adds the request.
type rejectError struct {
	field  string
	reason string
}

func (e *rejectError) Error() string { return e.field + ": " + e.reason }

func reject(field, format string, args ...any) error {
	return &rejectError{field: field, reason: fmt.Sprintf(format, args...)}
}

// closeError refuses a message and ends the connection with it: the
// front-end broke a rule that vhost-user.rst answers with a disconnect, or
// the request has a reply of its own with no failure form.
type closeError struct{ reason string }

func (e *closeError) Error() string { return e.reason }

// FramingError describes a fault in the message header or stream; after one
// the connection cannot be trusted and is closed.
type FramingError struct {
	Req    Request
	Field  string
	Reason string
}

func (e *FramingError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Req, e.Field, e.Reason)
}
