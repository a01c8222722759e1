package control

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vhostd/vhostd/netdev"
)

// fakeCapture records the capture commands as netdev.Device would answer.
type fakeCapture struct{ file string }

func (f *fakeCapture) StartCapture(path string) error {
	if f.file != "" {
		return fmt.Errorf("pcap start %s: %w (to %s)", path, netdev.ErrCaptureRunning, f.file)
	}
	if strings.Contains(path, "unwritable") {
		return fmt.Errorf("pcap %s: permission denied", path)
	}
	f.file = path
	return nil
}

func (f *fakeCapture) StopCapture() error {
	if f.file == "" {
		return fmt.Errorf("pcap stop: %w", netdev.ErrNoCapture)
	}
	f.file = ""
	return nil
}

func (f *fakeCapture) Capturing() string { return f.file }

func post(t *testing.T, c *http.Client, path, body string) (int, string) {
	t.Helper()
	resp, err := c.Post("http://vhostd"+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPcapCommands: POST /pcap/start and /pcap/stop reach the capture;
// a second start and a stop with none running answer 409, a relative or
// unwritable path 400, each naming what was wrong; GET /pcap tells the
// file; without a capture the commands answer 501.
func TestPcapCommands(t *testing.T) {
	fc := &fakeCapture{}
	_, c, _ := startFake(t, Config{Device: newFakeDevice(1), Capture: fc})
	steps := []struct {
		path, body string
		code       int
		want       string
	}{
		{"/pcap/stop", "", http.StatusConflict, "no capture is running"},
		{"/pcap/start", `{"file": "rel.pcapng"}`, http.StatusBadRequest, `rel.pcapng\" is not an absolute path`},
		{"/pcap/start", `{"file": "/x/unwritable"}`, http.StatusBadRequest, "/x/unwritable: permission denied"},
		{"/pcap/start", `nonsense`, http.StatusBadRequest, "want {"},
		{"/pcap/start", `{"file": "/tmp/a.pcapng"}`, http.StatusOK, `"file": "/tmp/a.pcapng"`},
		{"/pcap/start", `{"file": "/tmp/b.pcapng"}`, http.StatusConflict, "already running (to /tmp/a.pcapng)"},
		{"/pcap/stop", "", http.StatusOK, `"file": ""`},
		{"/pcap/pause", "", http.StatusNotFound, "/pcap/pause"},
	}
	for _, s := range steps {
		code, body := post(t, c, s.path, s.body)
		if code != s.code || !strings.Contains(body, s.want) {
			t.Errorf("POST %s %s: %d %s, want %d with %q", s.path, s.body, code, body, s.code, s.want)
		}
		if s.path == "/pcap/start" && s.code == http.StatusOK {
			var r PcapReply
			getJSON(t, c, "/pcap", &r)
			if r.File != "/tmp/a.pcapng" {
				t.Errorf("GET /pcap: %+v", r)
			}
			var st StatusReply
			if getJSON(t, c, "/status", &st); st.Capture != "/tmp/a.pcapng" {
				t.Errorf("GET /status: capture %q", st.Capture)
			}
		}
	}
	_, c, _ = startFake(t, Config{Device: newFakeDevice(1)})
	if code, body := post(t, c, "/pcap/stop", ""); code != http.StatusNotImplemented {
		t.Errorf("no capture: POST /pcap/stop: %d %s", code, body)
	}
	var e map[string]string
	if code, body := get(t, c, "/pcap"); code != http.StatusNotImplemented || json.Unmarshal([]byte(body), &e) != nil {
		t.Errorf("no capture: GET /pcap: %d %s", code, body)
	}
}
