package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol on the socket Options.QMP names: one command at a
// time, events kept for Events.
//
// The protocol (docs/interop/qmp-spec.rst): QEMU greets with {"QMP": {...}}; the client sends
// {"execute": "qmp_capabilities"} and then commands, {"execute": NAME, "arguments": {...},
// "id": ID}; each gets {"return": ..., "id": ID} or {"error": {"class": .., "desc": ..}, "id":
// ID}. Asynchronous events ({"event": NAME, "data": ..., "timestamp": ...}) may come at any
// time, also between a command and its answer.
type QMP struct {
	conn net.Conn
	dec  *json.Decoder

	mu     sync.Mutex // one command at a time
	id     int
	events []QMPEvent
	// Greeting is QEMU's {"QMP": ...} object.
	Greeting json.RawMessage
}

// QMPEvent is one asynchronous event.
type QMPEvent struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// QMPError is QEMU's answer {"error": {"class": .., "desc": ..}} to a command.
type QMPError struct {
	Command, Class, Desc string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// qmpMessage is any message from QEMU.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	ID    json.RawMessage `json:"id"`
	raw   json.RawMessage
}

// DialQMP connects to QEMU's QMP socket at path (retrying while QEMU has not created it or
// does not accept yet, until ctx ends), reads the greeting and negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var conn net.Conn
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	q := &QMP{conn: conn, dec: json.NewDecoder(conn)}
	stop := q.deadline(ctx)
	m, err := q.read()
	stop()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	if m.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: greeting is not {\"QMP\": ...}: %s", m.raw)
	}
	q.Greeting = m.QMP
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// deadline makes reads and writes fail when ctx ends; call the returned function when done.
func (q *QMP) deadline(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		q.conn.SetDeadline(time.Time{})
	}
}

func (q *QMP) read() (*qmpMessage, error) {
	var raw json.RawMessage
	if err := q.dec.Decode(&raw); err != nil {
		return nil, err
	}
	m := &qmpMessage{raw: raw}
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("%w: %s", err, raw)
	}
	if m.Event != "" {
		var ev QMPEvent
		if err := json.Unmarshal(raw, &ev); err == nil {
			q.events = append(q.events, ev)
		}
	}
	return m, nil
}

// Execute runs the command name with args (nil for none; a map or a struct that encodes to a
// JSON object) and returns QEMU's "return" value. An {"error": ...} answer is a *QMPError.
// Events that arrive meanwhile are kept for Events.
func (q *QMP) Execute(ctx context.Context, name string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.id++
	id := q.id
	req := map[string]any{"execute": name, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", name, err)
	}
	stop := q.deadline(ctx)
	defer stop()
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", name, err)
	}
	want, _ := json.Marshal(id)
	for {
		m, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", name, err)
		}
		if m.Event != "" || (m.Return == nil && m.Error == nil) {
			continue
		}
		if !bytes.Equal(m.ID, want) {
			continue // an answer to an earlier command that timed out
		}
		if m.Error != nil {
			return nil, &QMPError{Command: name, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		return m.Return, nil
	}
}

// Status returns the "status" of query-status ("running", "paused", ...).
func (q *QMP) Status(ctx context.Context) (string, error) {
	r, err := q.Execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(r, &s); err != nil {
		return "", fmt.Errorf("qmp query-status: %w: %s", err, r)
	}
	return s.Status, nil
}

// Events returns the events received so far, oldest first.
func (q *QMP) Events() []QMPEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]QMPEvent(nil), q.events...)
}

// Close closes the connection (QEMU goes on).
func (q *QMP) Close() error {
	if q == nil {
		return nil
	}
	err := q.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
