package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// fakeQMP serves one connection the way QEMU does: greeting, then answers from reply (by
// command name), with an event before each answer. It records the commands it got.
func fakeQMP(t *testing.T, ln net.Listener, reply map[string]string, got chan<- map[string]any) {
	c, err := ln.Accept()
	if err != nil {
		t.Errorf("accept: %v", err)
		return
	}
	defer c.Close()
	fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}`)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req map[string]any
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			t.Errorf("fake qmp: bad request %q: %v", sc.Text(), err)
			return
		}
		got <- req
		id, _ := json.Marshal(req["id"])
		name, _ := req["execute"].(string)
		fmt.Fprintf(c, `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "EV_%s"}`+"\n", name)
		r, ok := reply[name]
		if !ok {
			r = `"return": {}`
		}
		fmt.Fprintf(c, "{%s, \"id\": %s}\n", r, id)
	}
}

func TestQMPClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan map[string]any, 10)
	dialed := make(chan *QMP, 1)
	go func() {
		// The socket does not exist yet: DialQMP must retry.
		q, err := DialQMP(ctx, path)
		if err != nil {
			t.Errorf("DialQMP: %v", err)
		}
		dialed <- q
	}()
	time.Sleep(100 * time.Millisecond)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go fakeQMP(t, ln, map[string]string{
		"query-status": `"return": {"status": "paused", "running": false}`,
		"device_add":   `"error": {"class": "GenericError", "desc": "no free slot"}`,
	}, got)
	q := <-dialed
	if q == nil {
		t.FailNow()
	}
	defer q.Close()
	if r := <-got; r["execute"] != "qmp_capabilities" {
		t.Errorf("first command %v, want qmp_capabilities", r)
	}
	if _, err := q.Execute(ctx, "stop", nil); err != nil {
		t.Errorf("stop: %v", err)
	}
	if r := <-got; r["execute"] != "stop" || r["arguments"] != nil {
		t.Errorf("sent %v, want stop without arguments", r)
	}
	if s, err := q.Status(ctx); err != nil || s != "paused" {
		t.Errorf("Status = %q, %v; want paused", s, err)
	}
	<-got
	_, err = q.Execute(ctx, "device_add", map[string]any{"driver": "pc-dimm", "id": "d1", "memdev": "m1"})
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Desc != "no free slot" {
		t.Errorf("device_add error %v, want the GenericError", err)
	}
	if r := <-got; r["arguments"].(map[string]any)["memdev"] != "m1" {
		t.Errorf("device_add sent %v", r)
	}
	evs := q.Events()
	if len(evs) != 4 || evs[1].Event != "EV_stop" || evs[1].Timestamp.Microseconds != 2 {
		t.Errorf("events %+v, want one per command", evs)
	}
}
