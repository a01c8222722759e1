package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/vhostd/vhostd/netdev"
)

// Capture starts and stops vhostd's capture (cmd/vhostd's, over
// netdev.Device and the XDP guard).
type Capture interface {
	StartCapture(path string) error
	StopCapture() error
	Capturing() string
}

// PcapRequest is the body of POST /pcap/start.
type PcapRequest struct {
	File string `json:"file"` // an absolute path
}

// PcapReply answers /pcap: the file being written, "" if none.
type PcapReply struct {
	File string `json:"file"`
}

// pcapHandler serves GET /pcap, POST /pcap/start and POST /pcap/stop: the
// only requests that change anything, on the owner-only unix socket (the
// metrics listener serves /metrics alone).
func (s *Server) pcapHandler(mux *http.ServeMux) {
	c := s.cfg.Capture
	fail := func(w http.ResponseWriter, code int, err error) {
		w.WriteHeader(code)
		writeJSON(w, map[string]string{"error": err.Error()})
	}
	mux.HandleFunc("GET /pcap", func(w http.ResponseWriter, r *http.Request) {
		if c == nil {
			fail(w, http.StatusNotImplemented, errors.New("capture is not available in this vhostd"))
			return
		}
		writeJSON(w, PcapReply{File: c.Capturing()})
	})
	mux.HandleFunc("POST /pcap/{action}", func(w http.ResponseWriter, r *http.Request) {
		if c == nil {
			fail(w, http.StatusNotImplemented, errors.New("capture is not available in this vhostd"))
			return
		}
		var err error
		switch r.PathValue("action") {
		case "start":
			var req PcapRequest
			if e := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); e != nil {
				fail(w, http.StatusBadRequest, fmt.Errorf("pcap start: body: want {\"file\": PATH}: %v", e))
				return
			}
			if !filepath.IsAbs(req.File) {
				fail(w, http.StatusBadRequest, fmt.Errorf("pcap start: file %q is not an absolute path", req.File))
				return
			}
			err = c.StartCapture(req.File)
		case "stop":
			err = c.StopCapture()
		default:
			fail(w, http.StatusNotFound, fmt.Errorf("no such path %q: POST /pcap/start or /pcap/stop", r.URL.Path))
			return
		}
		switch {
		case errors.Is(err, netdev.ErrCaptureRunning), errors.Is(err, netdev.ErrNoCapture):
			fail(w, http.StatusConflict, err)
		case err != nil:
			fail(w, http.StatusBadRequest, err)
		default:
			writeJSON(w, PcapReply{File: c.Capturing()})
		}
	})
}
